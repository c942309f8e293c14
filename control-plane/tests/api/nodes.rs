//! The nodes list: applied version per node and whether it lags behind the configuration.

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app};

async fn nodes_show_their_applied_version_and_lag(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(app.nodes().await.data.is_empty());
    let current = app.latest_snapshot().await.version;

    assert_eq!(app.poll_snapshot("edge-a", 0, 0).await.status, StatusCode::OK);
    assert_eq!(app.poll_snapshot("edge-b", current, 0).await.status, StatusCode::NO_CONTENT);
    let list = app.nodes().await;
    assert_eq!(list.current_version, current);
    let a = list.data.iter().find(|n| n.node_id == "edge-a").unwrap();
    let b = list.data.iter().find(|n| n.node_id == "edge-b").unwrap();
    assert_eq!((a.applied_version, a.lagging), (0, true));
    assert_eq!((b.applied_version, b.lagging), (current, false));
    let first_seen = a.first_seen_at;

    // edge-a applies what it received; a change then makes both lag.
    app.poll_snapshot("edge-a", current, 0).await;
    app.create_team("new").await;
    let list = app.nodes().await;
    let a = list.data.iter().find(|n| n.node_id == "edge-a").unwrap();
    assert_eq!(a.applied_version, current);
    assert_eq!(a.first_seen_at, first_seen);
    assert!(a.last_seen_at >= first_seen);
    assert!(list.data.iter().all(|n| n.lagging));
    assert_eq!(list.current_version, current + 1);
}

async fn bad_node_ids_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let poll = app.poll_snapshot("has%20space", 0, 0).await;
    assert_eq!(poll.status, StatusCode::BAD_REQUEST);
}

backend_tests!(nodes_show_their_applied_version_and_lag, bad_node_ids_are_refused);
