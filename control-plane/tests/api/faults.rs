//! The fault script of issue 9: steady load through two real node binaries while one thing fails for
//! `SWITCHYARD_FAULT_OUTAGE_SECS` (3 s here; `make fault` runs 30 s), then a check that the control plane holds
//! exactly one usage record per response a client received — none lost, none twice — and that the nodes that
//! stayed up kept answering during the fault. Each scenario prints one line:
//! `fault=<name> served=N stored=N lost=0 duplicated=0 …`.
//!
//! - `control_plane`: the control plane unreachable (a TCP gate in front of it closed);
//! - `postgres`: the control plane's Postgres stopped and started again — a PRIVATE cluster (`initdb` into a temp
//!   dir, `pg_ctl` on a free port), never the shared server;
//! - `node_sigkill`: one node SIGKILLed halfway through a control plane outage and restarted on its state dir;
//! - `upstream`: the upstream answering 500s, then hanging (first-byte timeout), then garbage (200, not JSON),
//!   then cutting every stream after its first chunk; clients get OpenAI-shaped errors throughout;
//! - `redis`: the nodes' shared limits store (a private redis-server) killed and started again; limits fail open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_mock_provider::Failure;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::data_plane::free_port;
use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app, spawn_app_with};
use crate::node::{chat_body, start_mock};
use crate::usage_spool::{ChildNode, Gate, start_node_with_env, stored_request_ids};

/// How long each fault lasts.
fn outage() -> Duration {
    let secs = std::env::var("SWITCHYARD_FAULT_OUTAGE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    Duration::from_secs(secs)
}

/// One answered request: which node answered and when its response was complete.
#[derive(Clone, Copy)]
struct Answer {
    node: usize,
    at: Instant,
}

/// Four clients (two per node) sending chat requests back to back, streamed and not, alternating; each request
/// has its own `x-request-id`. A request counts as served when its whole response (any status) was received.
struct Load {
    addresses: Arc<Mutex<[String; 2]>>,
    served: Arc<Mutex<BTreeMap<String, Answer>>>,
    /// Responses that were neither a success nor an OpenAI-shaped error.
    unclean: Arc<Mutex<Vec<String>>>,
    errors: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addresses: [String; 2], key: &str) -> Self {
        let addresses = Arc::new(Mutex::new(addresses));
        let served = Arc::new(Mutex::new(BTreeMap::new()));
        let unclean = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let clients = (0..4usize)
            .map(|worker| {
                let (addresses, served, unclean, errors, key, mut stop) = (
                    addresses.clone(),
                    served.clone(),
                    unclean.clone(),
                    errors.clone(),
                    key.to_owned(),
                    stop_rx.clone(),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    for i in 0.. {
                        if *stop.borrow_and_update() {
                            break;
                        }
                        let node = worker % 2;
                        let address = addresses.lock().unwrap()[node].clone();
                        let id = format!("w{worker}-{i}");
                        let stream = i % 2 == 1;
                        let res = client
                            .post(format!("{address}/v1/chat/completions"))
                            .bearer_auth(&key)
                            .header("x-request-id", &id)
                            .json(&chat_body("m", stream))
                            .timeout(Duration::from_secs(10))
                            .send()
                            .await;
                        let answer = match res {
                            Ok(r) => {
                                let status = r.status();
                                r.bytes().await.ok().map(|body| (status, body))
                            }
                            Err(_) => None,
                        };
                        match answer {
                            Some((status, body)) => {
                                if !clean(status, stream, &body) {
                                    unclean.lock().unwrap().push(format!(
                                        "{id}: {status} {}",
                                        String::from_utf8_lossy(&body[..body.len().min(300)])
                                    ));
                                }
                                served.lock().unwrap().insert(id, Answer { node, at: Instant::now() });
                            }
                            None => {
                                // The node is down or restarting.
                                errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self { addresses, served, unclean, errors, stop, clients }
    }

    fn set_address(&self, node: usize, address: &str) {
        self.addresses.lock().unwrap()[node] = address.to_owned();
    }

    /// Stops the clients: the requests served, the unclean answers, and the attempts that got no answer.
    async fn finish(self) -> (BTreeMap<String, Answer>, Vec<String>, u64) {
        self.stop.send_replace(true);
        for c in self.clients {
            c.await.unwrap();
        }
        let failed = self.errors.load(Ordering::Relaxed);
        (self.served.lock().unwrap().clone(), self.unclean.lock().unwrap().clone(), failed)
    }
}

/// A success, or an OpenAI-shaped error: a JSON `{"error":{"message","code"…}}` body, or for a stream that ended
/// badly, an error event (streams end with `[DONE]` or an error event, never just stop).
fn clean(status: StatusCode, stream: bool, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    if status == StatusCode::OK && stream {
        return text.contains("data: [DONE]") || text.contains("data: {\"error\":");
    }
    let Ok(json) = serde_json::from_slice::<Value>(body) else { return false };
    if status == StatusCode::OK {
        return json["choices"].is_array();
    }
    json["error"]["message"].is_string() && json["error"].get("code").is_some()
}

/// The verdict of one scenario: prints the line and asserts no record is lost or duplicated, the surviving nodes
/// answered during the fault window, and every error the clients got was clean.
async fn verdict(
    name: &str,
    app: &TestApp,
    team_id: i64,
    (served, unclean, no_answer): (BTreeMap<String, Answer>, Vec<String>, u64),
    window: (Instant, Instant),
    survivors: &[usize],
) {
    let stored = stored_request_ids(app, team_id).await;
    let unique: BTreeSet<String> = stored.iter().cloned().collect();
    let duplicated = stored.len() - unique.len();
    let lost: Vec<&String> = served.keys().filter(|id| !unique.contains(*id)).collect();
    // Records of requests whose response the client did not get in full (cut by a SIGKILL) may be stored: the
    // node answered them; they are billed, not lost.
    let unanswered = unique.iter().filter(|id| !served.contains_key(*id)).count();
    let during: Vec<usize> = (0..2)
        .map(|n| served.values().filter(|a| a.node == n && a.at >= window.0 && a.at <= window.1).count())
        .collect();
    println!(
        "fault={name} served={} stored={} lost={} duplicated={duplicated} (outage {} s; answered during it by node \
         0/1: {}/{}; attempts without an answer: {no_answer}; stored without a full response: {unanswered}; \
         unclean responses: {})",
        served.len(),
        stored.len(),
        lost.len(),
        outage().as_secs(),
        during[0],
        during[1],
        unclean.len(),
    );
    assert!(served.len() > 50, "too little load to mean anything: {}", served.len());
    assert!(lost.is_empty(), "responses without a usage record: {:?}", &lost[..lost.len().min(10)]);
    assert_eq!(duplicated, 0);
    for &n in survivors {
        assert!(during[n] > 0, "node {n} answered nothing during the fault");
    }
    assert!(unclean.is_empty(), "responses that are not OpenAI-shaped: {:?}", &unclean[..unclean.len().min(5)]);
}

/// Two nodes of `control_plane` with their own state dirs.
struct Pair {
    nodes: Vec<ChildNode>,
    dirs: [tempfile::TempDir; 2],
}

impl Pair {
    async fn start(control_plane: &str, token: &str, env: &[(&str, String)]) -> Self {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut nodes = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            nodes.push(start_node_with_env(control_plane, token, dir.path(), &format!("fault-{i}"), env).await);
        }
        Self { nodes, dirs }
    }

    fn addresses(&self) -> [String; 2] {
        [self.nodes[0].address.clone(), self.nodes[1].address.clone()]
    }

    /// Waits until both nodes' spools are acknowledged (a 30 s outage leaves tens of thousands of records to
    /// send, more than a shutdown's grace period may cover on a busy machine), then stops both cleanly.
    async fn stop(self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        for n in &self.nodes {
            while n.metric("switchyard_usage_spool_bytes").await > 0 {
                assert!(Instant::now() < deadline, "the spool of {} did not drain", n.address);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for n in self.nodes {
            n.sigterm().await;
        }
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_control_plane_unreachable() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let gate = Gate::start(app.port).await;
    let pair = Pair::start(&gate.address, &app.node_token, &[]).await;
    let load = Load::start(pair.addresses(), &tenant.key);

    settle().await;
    gate.set_open(false);
    let from = Instant::now();
    tokio::time::sleep(outage()).await;
    let to = Instant::now();
    gate.set_open(true);
    settle().await;
    let result = load.finish().await;
    pair.stop().await;
    verdict("control_plane", &app, tenant.team.id, result, (from, to), &[0, 1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_node_sigkill_and_restart() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    // The control plane is unreachable around the kill, so the killed node's records are all still in its spool.
    let gate = Gate::start(app.port).await;
    let mut pair = Pair::start(&gate.address, &app.node_token, &[]).await;
    let load = Load::start(pair.addresses(), &tenant.key);

    settle().await;
    gate.set_open(false);
    let from = Instant::now();
    tokio::time::sleep(outage() / 2).await;
    pair.nodes.remove(0).sigkill().await;
    let restarted = start_node_with_env(&gate.address, &app.node_token, pair.dirs[0].path(), "fault-0", &[]).await;
    load.set_address(0, &restarted.address);
    pair.nodes.insert(0, restarted);
    tokio::time::sleep(outage() / 2).await;
    let to = Instant::now();
    gate.set_open(true);
    settle().await;
    let result = load.finish().await;
    pair.stop().await;
    verdict("node_sigkill", &app, tenant.team.id, result, (from, to), &[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_upstream_errors_timeouts_and_garbage() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let timeout = [("SWITCHYARD_UPSTREAM_FIRST_BYTE_TIMEOUT_MS", "300".to_owned())];
    let pair = Pair::start(&app.address, &app.node_token, &timeout).await;
    let load = Load::start(pair.addresses(), &tenant.key);

    settle().await;
    let from = Instant::now();
    for failure in [Failure::Status(500), Failure::Hang, Failure::Garbage, Failure::CutStreams] {
        mock.set_failure(Some(failure));
        tokio::time::sleep(outage() / 4).await;
    }
    let to = Instant::now();
    mock.set_failure(None);
    settle().await;
    let result = load.finish().await;
    pair.stop().await;
    verdict("upstream", &app, tenant.team.id, result, (from, to), &[0, 1]).await;
}

/// A private redis-server on `port`.
fn start_redis(port: u16) -> tokio::process::Child {
    tokio::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed for this test (.ci/services installs it)")
}

async fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_redis_stopped() {
    let port = free_port();
    let mut redis = start_redis(port);
    wait_for_port(port, "redis-server").await;
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    // Limits that never bind but make every request go through the Redis-backed limiter.
    app.put_limits(&format!("/teams/{}", tenant.team.id), &json!({ "rpm": 1_000_000, "max_concurrent": 1000 })).await;
    let pair =
        Pair::start(&app.address, &app.node_token, &[("SWITCHYARD_REDIS_URL", format!("redis://127.0.0.1:{port}"))])
            .await;
    let load = Load::start(pair.addresses(), &tenant.key);

    settle().await;
    redis.kill().await.unwrap();
    let from = Instant::now();
    tokio::time::sleep(outage()).await;
    let to = Instant::now();
    let _redis = start_redis(port);
    wait_for_port(port, "redis-server (restarted)").await;
    settle().await;
    let result = load.finish().await;
    pair.stop().await;
    verdict("redis", &app, tenant.team.id, result, (from, to), &[0, 1]).await;
}

/// A private Postgres cluster in a temp dir on a free port (trust auth), stopped and started by the test. Run as
/// the `postgres` user when the test runs as root (initdb refuses root).
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl PrivatePostgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(program: &str) -> std::process::Command {
        let path = Path::new(PG_BIN).join(program);
        let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn run(mut c: std::process::Command, what: &str) {
        let out = tokio::task::block_in_place(|| c.output())
            .unwrap_or_else(|e| panic!("{what}: {e} (Postgres 15 binaries are needed in {PG_BIN})"));
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let _ = std::process::Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status();
        let pg = Self { dir, port: free_port() };
        let mut init = Self::command("initdb");
        init.arg("-D").arg(pg.data()).args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        Self::run(init, "initdb");
        pg.up().await;
        pg
    }

    async fn up(&self) {
        let mut c = Self::command("pg_ctl");
        c.arg("-D").arg(self.data()).arg("-l").arg(self.dir.path().join("log")).args(["-w", "-t", "30", "-o"]).arg(
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display()),
        );
        c.arg("start");
        Self::run(c, "pg_ctl start");
        wait_for_port(self.port, "private postgres").await;
    }

    fn down(&self) {
        let mut c = Self::command("pg_ctl");
        c.arg("-D").arg(self.data()).args(["-w", "-m", "fast", "stop"]);
        Self::run(c, "pg_ctl stop");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut c = Self::command("pg_ctl");
        c.arg("-D").arg(self.data()).args(["-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_postgres_stopped() {
    let pg = PrivatePostgres::start().await;
    let db = TestDatabase::external(Backend::Postgres, format!("{}/postgres", pg.url()));
    let app = spawn_app_with(db, |_| {}).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let pair = Pair::start(&app.address, &app.node_token, &[]).await;
    let load = Load::start(pair.addresses(), &tenant.key);

    settle().await;
    pg.down();
    let from = Instant::now();
    tokio::time::sleep(outage()).await;
    let to = Instant::now();
    pg.up().await;
    settle().await;
    let result = load.finish().await;
    pair.stop().await;
    verdict("postgres", &app, tenant.team.id, result, (from, to), &[0, 1]).await;
}
