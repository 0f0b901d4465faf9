//! What every example shares: flags, logging, the `listening on` line.
//! Each example's application logic lives in a sibling module written
//! against `crate::rt`, the adapter its `main` picked.
#![allow(dead_code)]

pub(crate) mod cli;
