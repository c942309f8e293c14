//! The snapshot long-poll: what a node receives, when, and how versions move.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use switchyard_shared::snapshot::ProviderKind;
use switchyard_shared::{KeyHash, Price};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

async fn a_fresh_control_plane_serves_version_1(backend: Backend) {
    let app = spawn_app(backend).await;
    let poll = app.poll_snapshot("n1", 0, 0).await;
    assert_eq!(poll.content_type.as_deref(), Some("application/json"));
    let s = poll.snapshot();
    assert_eq!(s.version, 1);
    assert!(s.teams.is_empty() && s.keys.is_empty() && s.models.is_empty());
    assert_eq!(app.poll_snapshot("n1", 1, 0).await.status, StatusCode::NO_CONTENT);
}

async fn the_snapshot_holds_key_hashes_and_decrypted_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.setup_tenant("http://upstream.example/v1", "gpt-4o").await;
    let s = app.latest_snapshot().await;

    assert!(s.teams.iter().any(|x| x.id == t.team.id && x.name == t.team.name));
    let key = s.keys.iter().find(|k| k.id == t.key_id).expect("the key is in the snapshot");
    assert_eq!(key.hash, KeyHash::of(&t.key));
    assert_eq!(key.team_id, t.team.id);
    assert_eq!(key.allowed_models, None);
    let body = serde_json::to_string(&s).unwrap();
    assert!(!body.contains(&t.key), "the plaintext key never leaves the issuing response");

    let provider = s.providers.iter().find(|p| p.id == t.provider.id).unwrap();
    assert_eq!(provider.credential.as_deref(), Some(t.upstream_credential.as_str()));
    assert_eq!(provider.kind, ProviderKind::OpenaiCompatible);
    assert_eq!(provider.base_url, "http://upstream.example/v1");

    let model = s.models.iter().find(|m| m.name == "gpt-4o").unwrap();
    assert_eq!(model.price, Price { input_per_mtok: 2_500_000, output_per_mtok: 10_000_000 });
    assert_eq!(model.targets.len(), 1);
    assert_eq!(model.targets[0].provider_id, t.provider.id);
}

async fn nothing_newer_answers_204_after_the_wait(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = app.latest_snapshot().await.version;
    let started = Instant::now();
    let poll = app.poll_snapshot("n1", current, 1).await;
    let waited = started.elapsed();
    assert_eq!(poll.status, StatusCode::NO_CONTENT);
    assert!(poll.body.is_empty());
    assert!(waited >= Duration::from_millis(900), "answered after {waited:?}");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
}

async fn a_waiting_poll_answers_as_soon_as_a_change_commits(backend: Backend) {
    let app = spawn_app(backend).await;
    let current = app.latest_snapshot().await.version;
    let poll = async {
        let p = app.poll_snapshot("waiter", current, 30).await;
        (p, Instant::now())
    };
    let change = async {
        // Make the change only once the poll is parked: its node row appears when it starts waiting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !app.nodes().await.data.iter().any(|n| n.node_id == "waiter") {
            assert!(Instant::now() < deadline, "the poll never arrived");
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        app.create_team("late arrival").await;
        started
    };
    let ((poll, answered), committed) = tokio::join!(poll, change);
    let s = poll.snapshot();
    assert!(s.version > current);
    assert!(s.teams.iter().any(|t| t.name == "late arrival"));
    let latency = answered.duration_since(committed);
    assert!(latency < Duration::from_secs(1), "answered {latency:?} after the change");
}

/// Waits for the snapshot after the last seen version and records its version.
async fn advance(app: &TestApp, seen: &mut Vec<u64>) -> u64 {
    let last = *seen.last().unwrap();
    let s = app.next_snapshot(last).await;
    assert!(s.version > last, "{} after {last}", s.version);
    seen.push(s.version);
    s.version
}

async fn versions_increase_with_every_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut seen = vec![app.latest_snapshot().await.version];
    let team = app.create_team("t").await;
    advance(&app, &mut seen).await;
    let p = app.create_provider("p", "http://p.example/v1", Some("c")).await;
    advance(&app, &mut seen).await;
    app.create_simple_model("m", p.id, "m", 1, 1).await;
    advance(&app, &mut seen).await;
    let key = app.issue_key(team.id, &json!({ "name": "k" })).await;
    advance(&app, &mut seen).await;
    app.revoke_key(key.id).await;
    let last = advance(&app, &mut seen).await;
    assert_eq!(app.nodes().await.current_version, last);
    // Five changes, five bumps, each published.
    assert_eq!(seen, (0..6).map(|i| seen[0] + i).collect::<Vec<_>>());
}

async fn a_revoked_key_leaves_the_next_snapshot(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.setup_tenant("http://upstream.example/v1", "m").await;
    let before = app.latest_snapshot().await;
    assert!(before.keys.iter().any(|k| k.id == t.key_id));
    app.revoke_key(t.key_id).await;
    let after = app.next_snapshot(before.version).await;
    assert!(after.version > before.version);
    assert!(!after.keys.iter().any(|k| k.id == t.key_id));
    assert!(after.teams.iter().any(|x| x.id == t.team.id));
}

async fn a_change_through_another_replica_is_published_too(backend: Backend) {
    let a = spawn_app(backend).await;
    let b = spawn_app_with(a.database.clone(), |s| {
        s.encryption_key = a.settings.encryption_key.clone();
        s.node_token = a.settings.node_token.clone();
        s.bootstrap_operator_token = a.settings.bootstrap_operator_token.clone();
    })
    .await;
    let current = b.latest_snapshot().await.version;
    let (snapshot, ()) = tokio::join!(b.next_snapshot(current), async {
        a.create_team("made elsewhere").await;
    });
    assert!(snapshot.teams.iter().any(|t| t.name == "made elsewhere"));
}

backend_tests!(
    a_fresh_control_plane_serves_version_1,
    the_snapshot_holds_key_hashes_and_decrypted_credentials,
    nothing_newer_answers_204_after_the_wait,
    a_waiting_poll_answers_as_soon_as_a_change_commits,
    versions_increase_with_every_change,
    a_revoked_key_leaves_the_next_snapshot,
    a_change_through_another_replica_is_published_too,
);
