//! The contract between the Switchyard planes: everything that crosses the wire between the control plane and
//! data-plane nodes (snapshots, usage batches, the node protocol), the OpenAI-shaped error body both planes
//! answer with, and the secret formats (API keys, operator tokens) with their hashing.
//!
//! Architecture invariant: this crate does no I/O. Randomness and time enter as parameters.

pub mod error;
pub mod limits;
pub mod money;
pub mod period;
pub mod protocol;
pub mod secret;
pub mod snapshot;
pub mod usage;

pub use error::{ErrorBody, ErrorDetail};
pub use money::{Micros, Price};
pub use secret::{ApiKey, KeyHash, SecretFormatError};
pub use snapshot::Snapshot;
pub use usage::{UsageAck, UsageBatch, UsageRecord};
