//! Test harness: every test gets its own control plane on a random port and its own fresh database — a
//! temp-file SQLite or a Postgres database with a random name — plus typed helpers, one per endpoint.
//!
//! Postgres comes from `SWITCHYARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`). If it is
//! unreachable the Postgres tests fail with a message saying so; they never skip.

use std::sync::{Arc, Once};
use std::time::Duration;

use base64::Engine as _;
use rand::Rng as _;
use reqwest::StatusCode;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_control_plane::config::Secret;
use switchyard_control_plane::domain::keys::Key;
use switchyard_control_plane::domain::limits::{Alert, LimitsView};
use switchyard_control_plane::domain::models::Model;
use switchyard_control_plane::domain::nodes::NodeList;
use switchyard_control_plane::domain::providers::Provider;
use switchyard_control_plane::domain::teams::Team;
use switchyard_control_plane::domain::usage::UsagePage;
use switchyard_control_plane::{Application, BootstrapCredentials, Settings, StopHandle};
use switchyard_shared::protocol::{
    SNAPSHOT_PATH, SNAPSHOT_SHA256_HEADER, SNAPSHOT_VERSION_HEADER, USAGE_PATH, body_digest,
};
use switchyard_shared::secret::OPERATOR_TOKEN_PREFIX;
use switchyard_shared::{ApiKey, ErrorBody, Snapshot, UsageAck, UsageBatch};
use tempfile::TempDir;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(backend: Backend)`:
/// `<module>::sqlite::<name>` and `<module>::postgres::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )+
        }
    };
}

pub fn postgres_server_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A fresh, empty database. A Postgres one is dropped when the last handle goes.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    /// Holds the SQLite file and doubles as the data directory of the apps on this database.
    pub dir: TempDir,
    pg_name: Option<String>,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Arc<Self> {
        let dir = tempfile::tempdir().expect("cannot create a temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("switchyard.db").display());
                Arc::new(Self { backend, url, dir, pg_name: None })
            }
            Backend::Postgres => {
                let server = postgres_server_url();
                let mut opts = ConnectOptions::new(format!("{server}/postgres"));
                opts.connect_timeout(Duration::from_secs(5))
                    .acquire_timeout(Duration::from_secs(5))
                    .sqlx_logging(false);
                let admin = Database::connect(opts).await.unwrap_or_else(|e| {
                    panic!(
                        "Postgres tests need a server at {server} (set SWITCHYARD_TEST_POSTGRES_URL to change it); \
                             cannot connect: {e}"
                    )
                });
                let name = format!("switchyard_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute_unprepared(&format!(r#"CREATE DATABASE "{name}""#))
                    .await
                    .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
                admin.close().await.ok();
                Arc::new(Self { backend, url: format!("{server}/{name}"), dir, pg_name: Some(name) })
            }
        }
    }
}

impl TestDatabase {
    /// A database the caller created and owns (e.g. on a private Postgres cluster); nothing is dropped at the end.
    pub fn external(backend: Backend, url: String) -> Arc<Self> {
        Arc::new(Self { backend, url, dir: tempfile::tempdir().expect("cannot create a temp dir"), pg_name: None })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let server = postgres_server_url();
        // Drop cannot await; a short-lived runtime on its own thread does the clean-up.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(format!("{server}/postgres")).await {
                    let _ =
                        admin.execute_unprepared(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#)).await;
                    admin.close().await.ok();
                }
            });
        });
        let _ = cleanup.join();
    }
}

pub fn random_token(prefix: &'static str) -> String {
    ApiKey::generate(prefix, &mut rand::rng()).expose().to_owned()
}

pub fn random_encryption_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Settings of a test app on `db`: port 0, one worker, known secrets.
pub fn test_settings(db: &TestDatabase) -> Settings {
    let mut s = Settings::defaults();
    s.database_url = Secret::new(db.url.clone());
    s.listen = "127.0.0.1:0".to_owned();
    s.data_dir = db.dir.path().join("data");
    s.node_token = Some(Secret::new(random_token("synode-")));
    s.encryption_key = Some(Secret::new(random_encryption_key()));
    s.bootstrap_operator_token = Some(Secret::new(random_token(OPERATOR_TOKEN_PREFIX)));
    s.replica_poll_interval = Duration::from_secs(1);
    s.workers = Some(1);
    s
}

fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn init_test_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // `TEST_LOG=1 cargo test ...` shows the server's logs.
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = switchyard_control_plane::telemetry::init(switchyard_control_plane::telemetry::LogFormat::Pretty);
        }
    });
}

/// A running control plane and everything a test needs to talk to it.
// Some fields are only read by the end-to-end modules.
#[allow(dead_code)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub port: u16,
    pub operator_token: String,
    pub node_token: String,
    /// Base64 of the credential encryption key.
    pub encryption_key: String,
    pub backend: Backend,
    /// A pool on the app's database, for reading rows directly.
    pub db_pool: DatabaseConnection,
    pub database: Arc<TestDatabase>,
    pub settings: Settings,
    pub client: reqwest::Client,
    pub stop: StopHandle,
    /// What the first start created, if this app did the bootstrap.
    pub bootstrap: Option<BootstrapCredentials>,
}

/// Starts a control plane on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(TestDatabase::create(backend).await, |_| {}).await
}

/// Starts a control plane on `database` (fresh or shared with an earlier app), after `tweak` adjusts its settings.
pub async fn spawn_app_with(database: Arc<TestDatabase>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings(&database);
    tweak(&mut settings);
    spawn_with_settings(database, settings).await
}

pub async fn spawn_with_settings(database: Arc<TestDatabase>, settings: Settings) -> TestApp {
    install_crypto_provider();
    init_test_logs();
    let app = Application::build(settings.clone()).await.expect("the control plane failed to start");
    let operator_token = match (app.bootstrap(), &settings.bootstrap_operator_token) {
        (Some(b), _) => b.operator_token.expose().to_owned(),
        (None, Some(preset)) => preset.expose().to_owned(),
        (None, None) => String::new(),
    };
    let bootstrap = app.bootstrap().cloned();
    let port = app.port();
    let db_pool = app.db().clone();
    let stop = app.stop_handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(90))
        .build()
        .expect("cannot build the HTTP client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        operator_token,
        // A generated node token lives in the data directory.
        node_token: settings
            .node_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .or_else(|| std::fs::read_to_string(settings.data_dir.join("node.token")).ok())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default(),
        encryption_key: settings.encryption_key.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default(),
        backend: database.backend,
        db_pool,
        database,
        settings,
        client,
        stop,
        bootstrap,
    }
}

/// The answer to issuing a key: the key fields plus the plaintext `key`.
#[derive(Debug, Clone, Deserialize)]
// Some fields are only read by the end-to-end modules.
#[allow(dead_code)]
pub struct IssuedKey {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub prefix: String,
    pub key: String,
    pub allowed_models: Option<Vec<String>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What one snapshot poll answered.
#[derive(Debug)]
pub struct Poll {
    pub status: StatusCode,
    pub version_header: Option<String>,
    pub sha256_header: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Poll {
    /// The snapshot of a 200 answer, after checking the digest and version headers and `validate()`.
    pub fn snapshot(&self) -> Snapshot {
        assert_eq!(self.status, StatusCode::OK, "expected a snapshot");
        assert_eq!(
            self.sha256_header.as_deref(),
            Some(body_digest(&self.body).as_str()),
            "digest header must match the body"
        );
        let snapshot: Snapshot = serde_json::from_slice(&self.body).expect("the snapshot body is not a Snapshot");
        assert_eq!(self.version_header.as_deref(), Some(snapshot.version.to_string().as_str()));
        snapshot.validate().expect("the snapshot does not validate");
        snapshot
    }
}

/// A team with a provider, a priced model routed to it, and a key: enough for a data plane to serve requests.
#[derive(Debug, Clone)]
// Some fields are only read by the end-to-end modules.
#[allow(dead_code)]
pub struct Tenant {
    pub team: Team,
    pub provider: Provider,
    pub model: Model,
    /// The plaintext API key.
    pub key: String,
    pub key_id: i64,
    /// The plaintext upstream credential given to the provider.
    pub upstream_credential: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    // ---- raw requests -------------------------------------------------------------------------------------

    pub async fn api_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.operator_token)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn api_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.operator_token)
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn api_put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.operator_token)
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn api_delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.operator_token)
            .send()
            .await
            .expect("request failed")
    }

    // ---- admin API, typed ---------------------------------------------------------------------------------

    pub async fn create_team(&self, name: &str) -> Team {
        let res = self.api_post("/teams", &json!({ "name": name })).await;
        expect_json(res, StatusCode::CREATED).await
    }

    pub async fn list_teams(&self) -> Vec<Team> {
        expect_json(self.api_get("/teams").await, StatusCode::OK).await
    }

    pub async fn issue_key(&self, team_id: i64, body: &Value) -> IssuedKey {
        let res = self.api_post(&format!("/teams/{team_id}/keys"), body).await;
        expect_json(res, StatusCode::CREATED).await
    }

    pub async fn list_keys(&self, team_id: i64) -> Vec<Key> {
        expect_json(self.api_get(&format!("/teams/{team_id}/keys")).await, StatusCode::OK).await
    }

    pub async fn revoke_key(&self, key_id: i64) -> Key {
        let res = self.api_post(&format!("/keys/{key_id}/revoke"), &json!({})).await;
        expect_json(res, StatusCode::OK).await
    }

    pub async fn create_provider(&self, name: &str, base_url: &str, api_key: Option<&str>) -> Provider {
        let mut body = json!({ "name": name, "kind": "openai_compatible", "base_url": base_url });
        if let Some(k) = api_key {
            body["api_key"] = json!(k);
        }
        expect_json(self.api_post("/providers", &body).await, StatusCode::CREATED).await
    }

    pub async fn list_providers(&self) -> Vec<Provider> {
        expect_json(self.api_get("/providers").await, StatusCode::OK).await
    }

    pub async fn create_model(&self, body: &Value) -> Model {
        expect_json(self.api_post("/models", body).await, StatusCode::CREATED).await
    }

    /// A model routed to one provider, with the given prices.
    pub async fn create_simple_model(
        &self,
        name: &str,
        provider_id: i64,
        upstream_model: &str,
        input_price_per_mtok: i64,
        output_price_per_mtok: i64,
    ) -> Model {
        self.create_model(&json!({
            "name": name,
            "input_price_per_mtok": input_price_per_mtok,
            "output_price_per_mtok": output_price_per_mtok,
            "targets": [{ "provider_id": provider_id, "upstream_model": upstream_model }],
        }))
        .await
    }

    pub async fn list_models(&self) -> Vec<Model> {
        expect_json(self.api_get("/models").await, StatusCode::OK).await
    }

    /// `GET /usage?<query>`; `query` is a ready-made query string without `?`.
    pub async fn usage(&self, query: &str) -> UsagePage {
        expect_json(self.api_get(&format!("/usage?{query}")).await, StatusCode::OK).await
    }

    pub async fn nodes(&self) -> NodeList {
        expect_json(self.api_get("/nodes").await, StatusCode::OK).await
    }

    /// `PUT <owner>/limits`, `owner` being `/teams/{id}` or `/keys/{id}`.
    pub async fn put_limits(&self, owner: &str, limits: &Value) -> LimitsView {
        expect_json(self.api_put(&format!("{owner}/limits"), limits).await, StatusCode::OK).await
    }

    pub async fn get_limits(&self, owner: &str) -> LimitsView {
        expect_json(self.api_get(&format!("{owner}/limits")).await, StatusCode::OK).await
    }

    /// `GET /alerts?<query>`.
    pub async fn alerts(&self, query: &str) -> Vec<Alert> {
        expect_json(self.api_get(&format!("/alerts?{query}")).await, StatusCode::OK).await
    }

    /// Team + provider (pointing at `upstream_base_url`, with a credential) + model + key, in one call.
    pub async fn setup_tenant(&self, upstream_base_url: &str, model_name: &str) -> Tenant {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let team = self.create_team(&format!("team {}", &suffix[..8])).await;
        let upstream_credential = format!("sk-upstream-{suffix}");
        let provider = self
            .create_provider(&format!("provider-{}", &suffix[..8]), upstream_base_url, Some(&upstream_credential))
            .await;
        let model = self.create_simple_model(model_name, provider.id, model_name, 2_500_000, 10_000_000).await;
        let key = self.issue_key(team.id, &json!({ "name": "test key" })).await;
        Tenant { team, provider, model, key: key.key, key_id: key.id, upstream_credential }
    }

    // ---- node API ----------------------------------------------------------------------------------------

    pub async fn poll_snapshot(&self, node_id: &str, applied: u64, wait_secs: u64) -> Poll {
        self.poll_snapshot_with_token(&self.node_token, node_id, applied, wait_secs).await
    }

    pub async fn poll_snapshot_with_token(&self, token: &str, node_id: &str, applied: u64, wait_secs: u64) -> Poll {
        let res = self
            .client
            .get(self.url(&format!("{SNAPSHOT_PATH}?node_id={node_id}&applied={applied}&wait_secs={wait_secs}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("snapshot poll failed");
        let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Poll {
            status: res.status(),
            version_header: header(SNAPSHOT_VERSION_HEADER),
            sha256_header: header(SNAPSHOT_SHA256_HEADER),
            content_type: header("content-type"),
            body: res.bytes().await.expect("cannot read the poll body").to_vec(),
        }
    }

    /// The snapshot newer than `applied`, waiting up to 10 s for it.
    pub async fn next_snapshot(&self, applied: u64) -> Snapshot {
        self.poll_snapshot("test-node", applied, 10).await.snapshot()
    }

    /// The snapshot of everything committed so far: waits (on the long-poll itself) until the publisher has
    /// caught up with the configuration version in the database.
    pub async fn latest_snapshot(&self) -> Snapshot {
        let current = self.nodes().await.current_version;
        let snapshot = self.next_snapshot(current.saturating_sub(1)).await;
        assert!(snapshot.version >= current);
        snapshot
    }

    pub async fn post_usage_raw(&self, batch: &UsageBatch) -> reqwest::Response {
        self.client
            .post(self.url(USAGE_PATH))
            .bearer_auth(&self.node_token)
            .json(batch)
            .send()
            .await
            .expect("usage post failed")
    }

    pub async fn post_usage(&self, batch: &UsageBatch) -> UsageAck {
        expect_json(self.post_usage_raw(batch).await, StatusCode::OK).await
    }
}

/// Asserts the status and parses the JSON body.
pub async fn expect_json<T: DeserializeOwned>(res: reqwest::Response, status: StatusCode) -> T {
    let actual = res.status();
    let text = res.text().await.expect("cannot read the body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("unexpected body ({e}): {text}"))
}

/// Asserts the status and that the body is an OpenAI-shaped error; returns it.
pub async fn expect_error(res: reqwest::Response, status: StatusCode) -> ErrorBody {
    let actual = res.status();
    let text = res.text().await.expect("cannot read the body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let detail = &v["error"];
    assert!(detail["message"].is_string(), "no error.message: {text}");
    assert!(detail["type"].is_string(), "no error.type: {text}");
    assert!(detail.get("param").is_some(), "no error.param: {text}");
    assert!(detail.get("code").is_some(), "no error.code: {text}");
    serde_json::from_value(v).expect("not an ErrorBody")
}

/// A usage record as a node would report it, for ingest tests.
pub fn usage_record(
    team_id: i64,
    key_id: i64,
    model: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost_micros: i64,
) -> switchyard_shared::UsageRecord {
    switchyard_shared::UsageRecord {
        id: uuid::Uuid::now_v7(),
        request_id: format!("req-{}", uuid::Uuid::new_v4().simple()),
        node_id: "test-node".to_owned(),
        team_id,
        key_id,
        model: model.to_owned(),
        provider_id: Some(1),
        upstream_model: Some(format!("{model}-upstream")),
        started_at,
        duration_us: 1_200,
        ttft_us: Some(300),
        status: 200,
        error_code: None,
        stream: true,
        prompt_tokens,
        completion_tokens,
        cached_input_tokens: 0,
        cache_write_tokens: 0,
        reasoning_tokens: 0,
        usage_source: switchyard_shared::usage::UsageSource::Upstream,
        cost_micros,
    }
}
