//! The gRPC example's service, `graceful.example.Work`: its messages
//! (prost) and the server and client code `build.rs` generates for it.

#![allow(dead_code, unreachable_pub)]

include!(concat!(env!("OUT_DIR"), "/graceful.example.Work.rs"));

/// Sleep `ms` milliseconds, then answer.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct SleepRequest {
    #[prost(uint32, tag = "1")]
    pub ms: u32,
}

/// Who answered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SleepReply {
    /// The answering process's id.
    #[prost(uint32, tag = "1")]
    pub pid: u32,
}

/// Send a tick every `interval_ms`: `count` of them, or with `count` 0
/// until the server stops (then the stream ends with `UNAVAILABLE`), or
/// with `ignore_stop` until the client goes away or the server is forced.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub count: u32,
    #[prost(uint32, tag = "2")]
    pub interval_ms: u32,
    #[prost(bool, tag = "3")]
    pub ignore_stop: bool,
}

/// One tick of a count, from 1.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Tick {
    #[prost(uint32, tag = "1")]
    pub n: u32,
}
