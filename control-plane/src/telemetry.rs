//! Logging: `tracing` to stdout, JSON or human-readable (`SWITCHYARD_LOG_FORMAT=json|pretty`), filtered by
//! `RUST_LOG`. Nothing logs secrets or request bodies; see `web::log_requests` for what a request line holds.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("SWITCHYARD_LOG_FORMAT must be `json` or `pretty`, not `{0}`")]
    Format(String),
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn";

impl LogFormat {
    pub fn parse(s: &str) -> Result<Self, TelemetryError> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(TelemetryError::Format(other.to_owned())),
        }
    }
}

/// Installs the global subscriber from `SWITCHYARD_LOG_FORMAT` (default `pretty`) and `RUST_LOG`.
pub fn init_from_env() -> Result<(), TelemetryError> {
    let format = match std::env::var("SWITCHYARD_LOG_FORMAT") {
        Ok(v) if !v.trim().is_empty() => LogFormat::parse(v.trim())?,
        _ => LogFormat::Pretty,
    };
    init(format)
}

pub fn init(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a terminal, so piped or collected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let installed = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    installed.map_err(|e| TelemetryError::Install(e.to_string()))
}
