//! Data-plane nodes for end-to-end tests: real nodes (the data-plane server, in-process, on port 0) wired to a
//! test control plane, plus a mock upstream.

use std::path::Path;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::{Value, json};
use switchyard_data_plane::{Node, Secret, Server, Settings};
use switchyard_mock_provider::{MockConfig, MockHandle};
use tokio::task::JoinHandle;

use crate::helpers::TestApp;

pub struct TestNode {
    pub address: String,
    pub node: Node,
    handle: ServerHandle,
    join: JoinHandle<std::io::Result<()>>,
}

pub async fn start_mock() -> MockHandle {
    switchyard_mock_provider::start(([127, 0, 0, 1], 0).into(), MockConfig::default())
        .await
        .expect("mock provider did not start")
}

/// A node of `app` keeping its state in `state_dir` (pass the same directory to "restart" a node).
pub async fn spawn_node(app: &TestApp, state_dir: &Path) -> TestNode {
    spawn_node_at(&app.address, &app.node_token, state_dir).await
}

/// Like [`spawn_node`], after `tweak` adjusts the node's settings.
pub async fn spawn_node_with(app: &TestApp, state_dir: &Path, tweak: impl FnOnce(&mut Settings)) -> TestNode {
    let mut settings = node_settings(&app.address, &app.node_token, state_dir);
    tweak(&mut settings);
    start(settings).await
}

pub async fn spawn_node_at(control_plane: &str, node_token: &str, state_dir: &Path) -> TestNode {
    start(node_settings(control_plane, node_token, state_dir)).await
}

/// Settings of a test node: port 0, fast usage reporting, short grace at shutdown.
pub fn node_settings(control_plane: &str, node_token: &str, state_dir: &Path) -> Settings {
    let mut settings = Settings::new(control_plane, Secret::new(node_token));
    settings.listen = ([127, 0, 0, 1], 0).into();
    settings.state_dir = state_dir.to_path_buf();
    settings.report_interval = Duration::from_millis(20);
    settings.upstream_connect_timeout = Duration::from_secs(2);
    settings.workers = 1;
    settings.shutdown_usage_grace = Duration::from_millis(300);
    settings
}

async fn start(settings: Settings) -> TestNode {
    let server = Server::build(settings).await.expect("node did not build");
    let address = format!("http://127.0.0.1:{}", server.port());
    let node = server.node();
    let handle = server.handle();
    let join = tokio::spawn(server.run_until_stopped());
    TestNode { address, node, handle, join }
}

impl TestNode {
    /// Waits (on the node's own signal) until it serves the control plane's current configuration.
    pub async fn wait_for_config(&self, app: &TestApp) {
        let version = app.nodes().await.current_version;
        tokio::time::timeout(Duration::from_secs(10), self.node.snapshots.wait_for_version(version))
            .await
            .unwrap_or_else(|_| panic!("node did not reach snapshot version {version}"));
    }

    pub async fn chat(&self, key: &str, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.address))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request to the node failed")
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }
}

/// Waits (up to 20 s) until a node started as a child process answers `GET /readyz` with 200.
pub async fn wait_until_ready(address: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(std::time::Instant::now() < deadline, "the node at {address} never became ready");
        if let Ok(r) = reqwest::get(format!("{address}/readyz")).await
            && r.status() == reqwest::StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn chat_body(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{ "role": "system", "content": "be brief" }, { "role": "user", "content": "one two three" }],
        "stream": stream,
    })
}
