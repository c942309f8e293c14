//! Rotating the credential encryption key online: replicas run with the new key plus the previous one, the
//! `rotate-encryption-key` subcommand (a real child process) re-encrypts what is stored, and afterwards the new
//! key alone reads everything. Without the previous key, the new key alone cannot start the control plane.

use switchyard_control_plane::config::Secret;
use switchyard_control_plane::{Application, Settings};

use crate::helpers::{Backend, TestDatabase, random_encryption_key, spawn_with_settings, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encryption_key_rotates_without_losing_credentials() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let old_key = random_encryption_key();
    let new_key = random_encryption_key();
    let base = test_settings(&database);
    let with_keys = |current: &str, previous: Option<&str>| -> Settings {
        let mut s = base.clone();
        s.encryption_key = Some(Secret::new(current));
        s.encryption_key_previous = previous.map(Secret::new);
        s
    };

    let before = spawn_with_settings(database.clone(), with_keys(&old_key, None)).await;
    let tenant = before.setup_tenant("http://upstream.invalid/v1", "rotated").await;
    before.stop.stop().await;

    // The new key alone cannot read what the old one wrote: the first snapshot build fails, startup stops.
    assert!(Application::build(with_keys(&new_key, None)).await.is_err());

    // New key plus previous: serves, and the snapshot carries the credential in clear.
    let rotating = spawn_with_settings(database.clone(), with_keys(&new_key, Some(&old_key))).await;
    let credential_in = |snapshot: switchyard_shared::Snapshot| {
        snapshot.providers.iter().find(|p| p.id == tenant.provider.id).and_then(|p| p.credential.clone())
    };
    assert_eq!(credential_in(rotating.latest_snapshot().await).as_deref(), Some(tenant.upstream_credential.as_str()));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard-control-plane"))
        .arg("rotate-encryption-key")
        .env("SWITCHYARD_DATABASE_URL", &database.url)
        .env("SWITCHYARD_ENCRYPTION_KEY", &new_key)
        .env("SWITCHYARD_ENCRYPTION_KEY_PREVIOUS", &old_key)
        .env("SWITCHYARD_NODE_TOKEN", base.node_token.as_ref().unwrap().expose())
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.starts_with("0 "), "nothing was re-encrypted: {stdout}");
    rotating.stop.stop().await;

    // Afterwards the new key alone reads everything, and the old one no longer does.
    let after = spawn_with_settings(database.clone(), with_keys(&new_key, None)).await;
    assert_eq!(credential_in(after.latest_snapshot().await).as_deref(), Some(tenant.upstream_credential.as_str()));
    after.stop.stop().await;
    assert!(Application::build(with_keys(&old_key, None)).await.is_err());
}
