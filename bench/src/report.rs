//! Formatting shared by every bench: latencies, byte sizes, and the "target → measured → met" table.

use std::fmt::Write as _;

/// One of the targets next to what was measured.
pub struct Check {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Check {
    pub fn at_most(what: &str, target: &str, value: f64, limit: f64, measured: String) -> Self {
        Self { what: what.to_owned(), target: target.to_owned(), measured, met: value <= limit }
    }

    pub fn at_least(what: &str, target: &str, value: f64, limit: f64, measured: String) -> Self {
        Self { what: what.to_owned(), target: target.to_owned(), measured, met: value >= limit }
    }

    pub fn table(checks: &[Check]) -> String {
        let mut out = String::from("| target | wanted | measured | met? |\n|---|---|---|---|\n");
        for c in checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                c.what,
                c.target,
                c.measured,
                if c.met { "met" } else { "**not met**" }
            );
        }
        out
    }
}

/// A latency given in microseconds: µs below 10 ms, ms above.
pub fn fmt_lat(us: f64) -> String {
    if us >= 10_000.0 { format!("{:.2} ms", us / 1000.0) } else { format!("{us:.1} µs") }
}

/// A signed difference in microseconds.
pub fn fmt_delta(us: f64) -> String {
    if us.abs() >= 10_000.0 { format!("{:+.2} ms", us / 1000.0) } else { format!("{us:+.1} µs") }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn fmt_opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "n/a".to_owned(), f)
}
