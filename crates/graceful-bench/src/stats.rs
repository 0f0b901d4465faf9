//! Samples, medians and the output table.

use std::fmt::Write as _;

/// One measured implementation in one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) samples: Vec<f64>,
    pub(crate) note: String,
}

/// What a row is, for the ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Floor,
    Ours,
    Peer,
}

impl Row {
    pub(crate) fn new(name: &'static str, kind: Kind) -> Row {
        Row {
            name,
            kind,
            samples: Vec::new(),
            note: String::new(),
        }
    }

    pub(crate) fn median(&self) -> f64 {
        median(&self.samples)
    }
}

pub(crate) fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A scenario's result: rows, the unit, and whether lower is better.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) title: String,
    pub(crate) unit: &'static str,
    pub(crate) lower_is_better: bool,
    pub(crate) rows: Vec<Row>,
}

impl Table {
    /// Ratio of `row` to the first floor (how many times the floor's cost,
    /// or, for throughput, the floor's rate).
    pub(crate) fn vs_floor(&self, row: &Row) -> Option<f64> {
        let floor = self.rows.iter().find(|r| r.kind == Kind::Floor)?;
        Some(row.median() / floor.median())
    }

    /// Ratio of `row` to the best peer (by median).
    pub(crate) fn vs_best_peer(&self, row: &Row) -> Option<f64> {
        let peers = self.rows.iter().filter(|r| r.kind == Kind::Peer);
        let best = if self.lower_is_better {
            peers.map(Row::median).fold(f64::INFINITY, f64::min)
        } else {
            peers.map(Row::median).fold(f64::NEG_INFINITY, f64::max)
        };
        best.is_finite().then(|| row.median() / best)
    }

    pub(crate) fn row(&self, name: &str) -> &Row {
        self.rows.iter().find(|r| r.name == name).expect("row")
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let better = if self.lower_is_better {
            "lower is better"
        } else {
            "higher is better"
        };
        let _ = writeln!(out, "\n#### {} ({}, {better})\n", self.title, self.unit);
        let _ = writeln!(
            out,
            "| implementation | median | vs floor | vs best peer | notes |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---|");
        for row in &self.rows {
            let fmt_ratio = |r: Option<f64>| r.map_or("—".to_string(), |r| format!("{r:.2}x"));
            let name = match row.kind {
                Kind::Floor => format!("_{}_ (floor)", row.name),
                Kind::Ours => format!("**{}**", row.name),
                Kind::Peer => row.name.to_string(),
            };
            let vs_peer = if row.kind == Kind::Peer {
                None
            } else {
                self.vs_best_peer(row)
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} |",
                fmt_value(row.median()),
                fmt_ratio(self.vs_floor(row)),
                fmt_ratio(vs_peer),
                row.note
            );
        }
        out
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
