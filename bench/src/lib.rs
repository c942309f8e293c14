//! Switchyard's benchmark harness (issue 4): a closed-loop HTTP/1.1 load generator with per-process CPU and
//! memory accounting, the interleaved scenario suite (direct-to-mock, governed node, ungoverned node), the
//! snapshot scale bench, and the usage ingest bench. `bench/run` drives it all; BENCHMARKS.md has the results.

pub mod args;
pub mod client;
pub mod console;
pub mod fakecp;
pub mod finance;
pub mod hist;
pub mod ingest;
pub mod load;
pub mod procstat;
pub mod relay;
pub mod report;
pub mod seed;
pub mod snapshot;
pub mod suite;
