//! The durable usage spool through the real node binary: usage of requests served while the control plane is
//! unreachable survives SIGKILL (right after the responses, no waiting) and restarts, and reaches the control
//! plane exactly once when it is back. The fault scenarios under load (`faults.rs`) use the helpers here.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use switchyard_control_plane::entities::usage_records;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::data_plane::{free_port, sibling_binary};
use crate::helpers::{Backend, TestApp, spawn_app};
use crate::node::{chat_body, start_mock, wait_until_ready};

/// A TCP forwarder in front of the control plane that the test can close (cutting live connections and
/// dropping new ones, as a stopped control plane would) and open again.
pub struct Gate {
    pub address: String,
    open: watch::Sender<bool>,
}

impl Gate {
    pub async fn start(target_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (open, rx) = watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*rx.borrow() {
                    continue;
                }
                let mut closed = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self { address, open }
    }

    pub fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

pub struct ChildNode {
    child: Child,
    pub address: String,
}

async fn start_node(control_plane: &str, node_token: &str, state_dir: &Path) -> ChildNode {
    start_named_node(control_plane, node_token, state_dir, "spool-node").await
}

pub async fn start_named_node(control_plane: &str, node_token: &str, state_dir: &Path, node_id: &str) -> ChildNode {
    start_node_with_env(control_plane, node_token, state_dir, node_id, &[]).await
}

/// The node binary with extra environment (`SWITCHYARD_REDIS_URL`, upstream timeouts, …).
pub async fn start_node_with_env(
    control_plane: &str,
    node_token: &str,
    state_dir: &Path,
    node_id: &str,
    env: &[(&str, String)],
) -> ChildNode {
    let binary = sibling_binary("switchyard-data-plane");
    let port = free_port();
    let child = Command::new(&binary)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SWITCHYARD_CONTROL_PLANE_URL", control_plane)
        .env("SWITCHYARD_NODE_TOKEN", node_token)
        .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_STATE_DIR", state_dir)
        .env("SWITCHYARD_NODE_ID", node_id)
        .env("SWITCHYARD_REPORT_INTERVAL_MS", "20")
        .env("SWITCHYARD_WORKERS", "1")
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (build all binaries: cargo build --bins)", binary.display()));
    let address = format!("http://127.0.0.1:{port}");
    wait_until_ready(&address).await;
    ChildNode { child, address }
}

impl ChildNode {
    /// Value of an unlabelled metric of the node.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.address)).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} not found"))
    }

    /// Serves `count` requests (every other one streamed), each with its own request id, all answered 200.
    async fn serve(&self, key: &str, prefix: &str, count: usize, sent: &mut BTreeSet<String>) {
        let client = reqwest::Client::new();
        for i in 0..count {
            let id = format!("{prefix}-{i}");
            let res = client
                .post(format!("{}/v1/chat/completions", self.address))
                .bearer_auth(key)
                .header("x-request-id", &id)
                .json(&chat_body("m", i % 2 == 1))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            res.bytes().await.unwrap();
            sent.insert(id);
        }
    }

    pub async fn sigkill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    pub async fn sigterm(mut self) {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status}");
    }
}

pub async fn stored_request_ids(app: &TestApp, team_id: i64) -> Vec<String> {
    usage_records::Entity::find()
        .filter(usage_records::Column::TeamId.eq(team_id))
        .all(&app.db_pool)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_served_while_the_control_plane_is_down_survives_sigkill_and_arrives_exactly_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let gate = Gate::start(app.port).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sent = BTreeSet::new();

    // A node that got its snapshot, then loses the control plane and keeps serving.
    let node = start_node(&gate.address, &app.node_token, dir.path()).await;
    gate.set_open(false);
    node.serve(&tenant.key, "first", 30, &mut sent).await;
    // On disk as each response was delivered: no waiting for a reporter tick before the kill.
    assert_eq!(node.metric("switchyard_usage_spooled_records_total").await, 30);
    assert!(node.metric("switchyard_usage_spool_bytes").await > 0);
    node.sigkill().await;

    // Restarted from its on-disk snapshot, still without a control plane; killed again.
    let node = start_node(&gate.address, &app.node_token, dir.path()).await;
    node.serve(&tenant.key, "second", 20, &mut sent).await;
    node.sigkill().await;
    assert!(stored_request_ids(&app, tenant.team.id).await.is_empty());

    // The control plane is back: the third run replays both runs' records and a clean stop flushes them.
    let node = start_node(&gate.address, &app.node_token, dir.path()).await;
    gate.set_open(true);
    node.serve(&tenant.key, "third", 10, &mut sent).await;
    node.sigterm().await;

    let stored = stored_request_ids(&app, tenant.team.id).await;
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique.len(), "a record was stored twice");
    assert_eq!(unique, sent, "stored records differ from the responses served");
    assert_eq!(stored.len(), 60);
}
