//! Settings of the control plane: defaults, then the environment (with `*_FILE` variants for secrets), and the
//! secrets that a single-node SQLite install generates for itself on first start.
//!
//! Tests build [`Settings`] directly; nothing here mutates the process environment.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng as _;
use switchyard_shared::ApiKey;
use switchyard_shared::period::Zone;

use crate::crypto::Cipher;
use crate::domain::invoices::Currency;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://.switchyard/switchyard.db?mode=rwc";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_DATA_DIR: &str = ".switchyard";
/// Prefix of node tokens the control plane generates for itself.
pub const NODE_TOKEN_PREFIX: &str = "synode-";
const ENCRYPTION_KEY_FILE: &str = "encryption.key";
const NODE_TOKEN_FILE: &str = "node.token";

pub use switchyard_shared::secret::Secret;

/// Every environment variable the control plane binary reads, `*_FILE` variants included. The deploy files are
/// checked against this list (tests/api/deploy.rs), and a unit test below keeps it in step with the code.
pub const ENV_VARS: &[&str] = &[
    "SWITCHYARD_DATABASE_URL",
    "SWITCHYARD_DATABASE_URL_FILE",
    "SWITCHYARD_CP_LISTEN",
    "SWITCHYARD_DATA_DIR",
    "SWITCHYARD_NODE_TOKEN",
    "SWITCHYARD_NODE_TOKEN_FILE",
    "SWITCHYARD_ENCRYPTION_KEY",
    "SWITCHYARD_ENCRYPTION_KEY_FILE",
    "SWITCHYARD_ENCRYPTION_KEY_PREVIOUS",
    "SWITCHYARD_ENCRYPTION_KEY_PREVIOUS_FILE",
    "SWITCHYARD_BOOTSTRAP_OPERATOR_TOKEN",
    "SWITCHYARD_BOOTSTRAP_OPERATOR_TOKEN_FILE",
    "SWITCHYARD_CP_WORKERS",
    "SWITCHYARD_CP_REPLICA_POLL_MS",
    "SWITCHYARD_REPORTING_TIMEZONE",
    "SWITCHYARD_CURRENCY",
    "SWITCHYARD_SPEND_PUBLISH_FLOOR_MS",
    "SWITCHYARD_USAGE_RETENTION_MONTHS",
    "SWITCHYARD_USAGE_INGEST_LANES",
    "SWITCHYARD_LOG_FORMAT",
    "SWITCHYARD_QUICKSTART_NODE_LISTEN",
    "RUST_LOG",
];

#[derive(Debug, Clone)]
pub struct Settings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub database_url: Secret,
    /// Address of the admin and node API, e.g. `127.0.0.1:8081`; port 0 picks a free port.
    pub listen: String,
    /// Bearer token data-plane nodes present. Generated into `data_dir` on SQLite when absent.
    pub node_token: Option<Secret>,
    /// Base64 of the 32-byte AES-256-GCM key that encrypts provider credentials. Generated on SQLite when absent.
    pub encryption_key: Option<Secret>,
    /// During a key rotation, the key being replaced: it only decrypts (`rotate-encryption-key` re-encrypts).
    pub encryption_key_previous: Option<Secret>,
    /// Where generated secrets (and, by default, the SQLite file) live.
    pub data_dir: PathBuf,
    /// On first start, the operator token to create instead of a random one (quickstarts and tests need it known).
    pub bootstrap_operator_token: Option<Secret>,
    /// How often the snapshot publisher checks whether another replica moved the configuration version.
    pub replica_poll_interval: Duration,
    /// HTTP worker threads; `None` lets actix pick one per core.
    pub workers: Option<usize>,
    /// The one time zone whose calendar days usage rollups and reports use (`SWITCHYARD_REPORTING_TIMEZONE`).
    pub reporting_timezone: Zone,
    /// The deployment currency of invoices (`SWITCHYARD_CURRENCY`, ISO 4217, default USD).
    pub currency: Currency,
    /// The least time between two snapshots published only because budget spend moved
    /// (`SWITCHYARD_SPEND_PUBLISH_FLOOR_MS`); configuration changes are published at once.
    pub spend_publish_floor: Duration,
    /// Postgres only: keep raw usage records of the current month and this many months before it, dropping older
    /// monthly partitions (`SWITCHYARD_USAGE_RETENTION_MONTHS`); 0 keeps everything (the default).
    pub usage_retention_months: u32,
    /// Postgres only: connections of their own that usage batches are COPYed through
    /// (`SWITCHYARD_USAGE_INGEST_LANES`, default 4); 0 sends batches as one JSON parameter on the shared pool.
    pub usage_ingest_lanes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is required when the database is not SQLite")]
    Required { name: &'static str },
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot read {name} from {path}")]
    ReadFile {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot store a generated secret in {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Settings {
    /// Defaults suitable for a single-node SQLite install in the working directory.
    pub fn defaults() -> Self {
        Self {
            database_url: Secret::new(DEFAULT_DATABASE_URL),
            listen: DEFAULT_LISTEN.to_owned(),
            node_token: None,
            encryption_key: None,
            encryption_key_previous: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bootstrap_operator_token: None,
            replica_poll_interval: Duration::from_secs(5),
            workers: None,
            reporting_timezone: Zone::UTC,
            currency: Currency::USD,
            spend_publish_floor: Duration::from_millis(250),
            usage_retention_months: 0,
            usage_ingest_lanes: crate::domain::usage_copy::LANES,
        }
    }

    /// Reads the process environment on top of [`Settings::defaults`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any variable lookup, so the layering is testable without touching the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut s = Self::defaults();
        if let Some(v) = secret_var(&lookup, "SWITCHYARD_DATABASE_URL")? {
            s.database_url = v;
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_CP_LISTEN")) {
            s.listen = v;
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_DATA_DIR")) {
            s.data_dir = PathBuf::from(v);
        }
        s.node_token = secret_var(&lookup, "SWITCHYARD_NODE_TOKEN")?;
        s.encryption_key = secret_var(&lookup, "SWITCHYARD_ENCRYPTION_KEY")?;
        s.encryption_key_previous = secret_var(&lookup, "SWITCHYARD_ENCRYPTION_KEY_PREVIOUS")?;
        s.bootstrap_operator_token = secret_var(&lookup, "SWITCHYARD_BOOTSTRAP_OPERATOR_TOKEN")?;
        if let Some(v) = non_empty(lookup("SWITCHYARD_CP_WORKERS")) {
            let n = v
                .parse::<usize>()
                .map_err(|e| ConfigError::Invalid { name: "SWITCHYARD_CP_WORKERS", reason: e.to_string() })?;
            s.workers = Some(n.max(1));
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_CP_REPLICA_POLL_MS")) {
            let ms = v
                .parse::<u64>()
                .map_err(|e| ConfigError::Invalid { name: "SWITCHYARD_CP_REPLICA_POLL_MS", reason: e.to_string() })?;
            s.replica_poll_interval = Duration::from_millis(ms.max(10));
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_REPORTING_TIMEZONE")) {
            s.reporting_timezone = Zone::parse(&v)
                .map_err(|e| ConfigError::Invalid { name: "SWITCHYARD_REPORTING_TIMEZONE", reason: e.to_string() })?;
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_CURRENCY")) {
            s.currency = Currency::parse(v.trim())
                .map_err(|reason| ConfigError::Invalid { name: "SWITCHYARD_CURRENCY", reason })?;
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_SPEND_PUBLISH_FLOOR_MS")) {
            let ms = v.parse::<u64>().map_err(|e| ConfigError::Invalid {
                name: "SWITCHYARD_SPEND_PUBLISH_FLOOR_MS",
                reason: e.to_string(),
            })?;
            s.spend_publish_floor = Duration::from_millis(ms);
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_USAGE_INGEST_LANES")) {
            s.usage_ingest_lanes = v
                .parse::<usize>()
                .map_err(|e| ConfigError::Invalid { name: "SWITCHYARD_USAGE_INGEST_LANES", reason: e.to_string() })?;
        }
        if let Some(v) = non_empty(lookup("SWITCHYARD_USAGE_RETENTION_MONTHS")) {
            s.usage_retention_months = v.parse::<u32>().map_err(|e| ConfigError::Invalid {
                name: "SWITCHYARD_USAGE_RETENTION_MONTHS",
                reason: e.to_string(),
            })?;
        }
        Ok(s)
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }

    /// The SQLite file path named by the URL, if the database is a file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url.expose();
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return None;
        }
        Some(PathBuf::from(path))
    }

    /// Resolves the node token and encryption key: configured values win; on SQLite a missing one is generated
    /// once into `data_dir` (mode 0600) and read back on later starts; on Postgres a missing one is an error,
    /// because replicas must share them.
    pub fn resolve_secrets(&self) -> Result<ResolvedSecrets, ConfigError> {
        let key = match &self.encryption_key {
            Some(k) => k.clone(),
            None if self.is_sqlite() => load_or_generate(&self.data_dir.join(ENCRYPTION_KEY_FILE), || {
                let mut bytes = [0u8; 32];
                rand::rng().fill(&mut bytes);
                BASE64.encode(bytes)
            })?,
            None => {
                return Err(ConfigError::Required { name: "SWITCHYARD_ENCRYPTION_KEY" });
            }
        };
        let mut cipher = Cipher::from_base64_key(key.expose())
            .map_err(|e| ConfigError::Invalid { name: "SWITCHYARD_ENCRYPTION_KEY", reason: e.to_string() })?;
        if let Some(previous) = &self.encryption_key_previous {
            cipher = cipher.with_previous_key(previous.expose()).map_err(|e| ConfigError::Invalid {
                name: "SWITCHYARD_ENCRYPTION_KEY_PREVIOUS",
                reason: e.to_string(),
            })?;
        }
        let node_token = match &self.node_token {
            Some(t) => t.clone(),
            None if self.is_sqlite() => load_or_generate(&self.data_dir.join(NODE_TOKEN_FILE), || {
                ApiKey::generate(NODE_TOKEN_PREFIX, &mut rand::rng()).expose().to_owned()
            })?,
            None => {
                return Err(ConfigError::Required { name: "SWITCHYARD_NODE_TOKEN" });
            }
        };
        if node_token.expose().len() < 16 {
            return Err(ConfigError::Invalid {
                name: "SWITCHYARD_NODE_TOKEN",
                reason: "must be at least 16 characters".to_owned(),
            });
        }
        Ok(ResolvedSecrets { node_token, cipher })
    }
}

/// Secrets ready for use, after generation or loading.
#[derive(Debug)]
pub struct ResolvedSecrets {
    pub node_token: Secret,
    pub cipher: Cipher,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `NAME` directly, or the contents of the file named by `NAME_FILE` (trailing newline trimmed).
fn secret_var(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<Option<Secret>, ConfigError> {
    if let Some(v) = non_empty(lookup(name)) {
        return Ok(Some(Secret::new(v)));
    }
    let file_var = format!("{name}_FILE");
    let Some(path) = non_empty(lookup(&file_var)) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    let contents =
        std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile { name, path: path.clone(), source })?;
    Ok(non_empty(Some(contents)).map(Secret::new))
}

fn load_or_generate(path: &Path, generate: impl FnOnce() -> String) -> Result<Secret, ConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map(|s| Secret::new(s.trim())).map_err(|source| ConfigError::ReadFile {
            name: "generated secret",
            path: path.to_owned(),
            source,
        })
    };
    if path.exists() {
        return read(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::WriteFile { path: dir.to_owned(), source })?;
    }
    let value = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(value.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
                .and_then(|()| file.sync_all())
                .map_err(|source| ConfigError::WriteFile { path: path.to_owned(), source })?;
            tracing::info!(path = %path.display(), "generated a new secret");
            Ok(Secret::new(value))
        }
        // Another process created it between our check and our write: theirs wins.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(source) => Err(ConfigError::WriteFile { path: path.to_owned(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_overrides_defaults_and_files_hold_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "from-a-file-0123456789\n").unwrap();
        let s = Settings::from_lookup(lookup(&[
            ("SWITCHYARD_CP_LISTEN", "0.0.0.0:9000"),
            ("SWITCHYARD_NODE_TOKEN_FILE", token_file.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000");
        assert_eq!(s.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(s.node_token.as_ref().unwrap().expose(), "from-a-file-0123456789");
        assert!(!format!("{s:?}").contains("from-a-file"));
    }

    #[test]
    fn the_currency_is_an_iso_code_usd_by_default() {
        assert_eq!(Settings::from_lookup(lookup(&[])).unwrap().currency, Currency::USD);
        let eur = Settings::from_lookup(lookup(&[("SWITCHYARD_CURRENCY", "EUR")])).unwrap();
        assert_eq!(eur.currency.as_str(), "EUR");
        let err = Settings::from_lookup(lookup(&[("SWITCHYARD_CURRENCY", "euro")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { name: "SWITCHYARD_CURRENCY", .. }), "{err}");
    }

    #[test]
    fn sqlite_generates_secrets_once_and_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::defaults();
        s.data_dir = dir.path().join("data");
        let first = s.resolve_secrets().unwrap();
        let second = s.resolve_secrets().unwrap();
        assert_eq!(first.node_token, second.node_token);
        assert!(first.node_token.expose().starts_with(NODE_TOKEN_PREFIX));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(s.data_dir.join(ENCRYPTION_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ct = first.cipher.encrypt("hello").unwrap();
        assert_eq!(second.cipher.decrypt(&ct).unwrap(), "hello");
    }

    #[test]
    fn postgres_requires_configured_secrets() {
        let mut s = Settings::defaults();
        s.database_url = Secret::new("postgres://postgres@127.0.0.1/x");
        assert!(matches!(s.resolve_secrets(), Err(ConfigError::Required { name: "SWITCHYARD_ENCRYPTION_KEY" })));
    }

    #[test]
    fn env_vars_lists_every_variable_the_code_reads() {
        // This file without the list itself and without its tests, so the list cannot vouch for itself.
        let this = include_str!("config.rs");
        let (head, rest) = this.split_once("pub const ENV_VARS").unwrap();
        let (_, body) = rest.split_once("];").unwrap();
        let body = body.split("#[cfg(test)]").next().unwrap();
        let sources = [head, body, include_str!("telemetry.rs"), include_str!("quickstart.rs")];
        for src in sources {
            for (i, _) in src.match_indices("\"SWITCHYARD_") {
                let name: String = src[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                let listed = ENV_VARS.contains(&name.as_str()) || name.ends_with('_');
                // Variables the quickstart passes to its node are the data plane's, not ours.
                let for_the_node = src.contains(&format!(".env(\"{name}\""));
                assert!(listed || for_the_node, "{name} is read but missing from ENV_VARS");
            }
        }
        for name in ENV_VARS {
            let base = name.strip_suffix("_FILE").unwrap_or(name);
            assert!(
                sources.iter().any(|s| s.contains(&format!("\"{base}\""))),
                "{name} is listed but nothing reads it"
            );
        }
    }

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        let mut s = Settings::defaults();
        assert_eq!(s.sqlite_path(), Some(PathBuf::from(".switchyard/switchyard.db")));
        s.database_url = Secret::new("sqlite::memory:");
        assert_eq!(s.sqlite_path(), None);
    }
}
