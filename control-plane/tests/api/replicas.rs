//! Two control-plane replicas on one database, a node on each: a change made through either replica reaches
//! every node, as exactly one new snapshot version. On Postgres the replicas' fallback timer is set to an hour,
//! so only the LISTEN/NOTIFY wake-up (`replicas.rs`) can explain a prompt delivery; SQLite has no notifications
//! and relies on the timer, set short here.

use std::time::Duration;

use reqwest::StatusCode;
use switchyard_control_plane::Settings;

use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app_with};
use crate::node::{TestNode, chat_body, spawn_node, start_mock};

fn replica_poll(backend: Backend) -> Duration {
    match backend {
        Backend::Postgres => Duration::from_secs(3600),
        Backend::Sqlite => Duration::from_millis(100),
    }
}

/// Replica B of `a`: same database and secrets.
async fn second_replica(a: &TestApp) -> TestApp {
    let poll = replica_poll(a.backend);
    spawn_app_with(a.database.clone(), |s: &mut Settings| {
        s.encryption_key = a.settings.encryption_key.clone();
        s.node_token = a.settings.node_token.clone();
        s.bootstrap_operator_token = a.settings.bootstrap_operator_token.clone();
        s.replica_poll_interval = poll;
    })
    .await
}

/// Waits until `node` serves `version`, then checks it did not overshoot (one change, one version).
async fn applies_exactly(node: &TestNode, version: u64, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), node.node.snapshots.wait_for_version(version))
        .await
        .unwrap_or_else(|_| panic!("{what}: the node did not reach version {version}"));
    assert_eq!(node.node.snapshots.version(), version, "{what}: one change must publish one version");
}

async fn a_change_through_either_replica_reaches_every_node_once(backend: Backend) {
    let poll = replica_poll(backend);
    let a = spawn_app_with(TestDatabase::create(backend).await, |s| s.replica_poll_interval = poll).await;
    let b = second_replica(&a).await;
    let mock = start_mock().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on_a = spawn_node(&a, dir_a.path()).await;
    let on_b = spawn_node(&b, dir_b.path()).await;
    on_a.wait_for_config(&a).await;
    on_b.wait_for_config(&b).await;

    // A tenant created through A (five changes) is served by the node that polls B.
    let tenant = a.setup_tenant(&mock.base_url(), "replicated").await;
    let v = a.nodes().await.current_version;
    applies_exactly(&on_b, v, "tenant through A, node on B").await;
    applies_exactly(&on_a, v, "tenant through A, node on A").await;
    let res = on_b.chat(&tenant.key, &chat_body("replicated", false)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A revocation through B stops the key on the node that polls A.
    b.revoke_key(tenant.key_id).await;
    applies_exactly(&on_a, v + 1, "revocation through B, node on A").await;
    applies_exactly(&on_b, v + 1, "revocation through B, node on B").await;
    let res = on_a.chat(&tenant.key, &chat_body("replicated", false)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Both replicas see both nodes current, once each node's next poll has confirmed the version it applied.
    for app in [&a, &b] {
        let all_current = async {
            loop {
                let nodes = app.nodes().await;
                assert_eq!(nodes.current_version, v + 1);
                if nodes.data.len() == 2 && nodes.data.iter().all(|n| n.applied_version == v + 1 && !n.lagging) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), all_current)
            .await
            .unwrap_or_else(|_| panic!("a replica does not see both nodes current: {:?}", app.settings.listen));
    }
    on_a.stop().await;
    on_b.stop().await;
}

/// Two replicas starting together on a fresh Postgres database: the migration lock lets one migrate while the
/// other waits. (Several replicas are a Postgres deployment; a SQLite file belongs to one process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_postgres_migrate_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let first = crate::helpers::test_settings(&database);
    let mut second = crate::helpers::test_settings(&database);
    second.encryption_key = first.encryption_key.clone();
    second.node_token = first.node_token.clone();
    second.bootstrap_operator_token = first.bootstrap_operator_token.clone();
    let (a, b) = tokio::join!(
        crate::helpers::spawn_with_settings(database.clone(), first),
        crate::helpers::spawn_with_settings(database.clone(), second),
    );
    assert_eq!(a.list_teams().await.len(), b.list_teams().await.len());
    let ready = a.client.get(b.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

backend_tests!(a_change_through_either_replica_reaches_every_node_once);
