//! First start and restarts: the operator is created once, secrets of a SQLite install are generated once.

use reqwest::StatusCode;
use sea_orm::EntityTrait as _;
use switchyard_control_plane::Application;
use switchyard_control_plane::entities::users;
use switchyard_control_plane::startup::StartupError;
use switchyard_shared::secret::OPERATOR_TOKEN_PREFIX;

use crate::helpers::{Backend, TestDatabase, spawn_app_with, test_settings};

async fn the_first_start_creates_one_operator_and_restarts_create_none(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let first = spawn_app_with(db.clone(), |s| s.bootstrap_operator_token = None).await;
    let creds = first.bootstrap.clone().expect("the first start bootstraps");
    assert_eq!(creds.email, "admin@localhost");
    assert_eq!(creds.password.expose().len(), 20);
    assert!(creds.operator_token.expose().starts_with(OPERATOR_TOKEN_PREFIX));
    assert!(!format!("{creds:?}").contains(creds.password.expose()));
    assert_eq!(first.api_get("/teams").await.status(), StatusCode::OK);

    let users = users::Entity::find().all(&first.db_pool).await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].password_hash.starts_with("$argon2id$"));
    assert!(!users[0].password_hash.contains(creds.password.expose()));

    let second = spawn_app_with(db, |s| {
        s.bootstrap_operator_token = None;
        s.encryption_key = first.settings.encryption_key.clone();
    })
    .await;
    assert!(second.bootstrap.is_none());
    let res =
        second.client.get(second.url("/api/v1/teams")).bearer_auth(creds.operator_token.expose()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

backend_tests!(the_first_start_creates_one_operator_and_restarts_create_none);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_generates_its_secrets_once_and_reuses_them() {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let unset = |s: &mut switchyard_control_plane::Settings| {
        s.node_token = None;
        s.encryption_key = None;
    };
    let first = spawn_app_with(db.clone(), unset).await;
    let data_dir = first.settings.data_dir.clone();
    #[cfg(unix)]
    for file in ["encryption.key", "node.token"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data_dir.join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    first.create_provider("p", "http://p.example/v1", Some("sk-kept-across-restarts")).await;
    first.stop.stop().await;

    // The restarted app must decrypt the stored credential, so it must have found the same key.
    let second = spawn_app_with(db, |s| {
        unset(s);
        s.bootstrap_operator_token = first.settings.bootstrap_operator_token.clone();
    })
    .await;
    assert_eq!(second.node_token, first.node_token);
    let s = second.latest_snapshot().await;
    assert_eq!(s.providers[0].credential.as_deref(), Some("sk-kept-across-restarts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_to_start_without_configured_secrets() {
    let db = TestDatabase::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    settings.encryption_key = None;
    match Application::build(settings).await {
        Err(StartupError::Config(e)) => {
            assert!(e.to_string().contains("SWITCHYARD_ENCRYPTION_KEY"), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("started without an encryption key"),
    }
}
