//! Limits end to end: real nodes sharing the Redis on 127.0.0.1:6379 (each test under its own key prefix, so
//! tests run in parallel), a control plane, and the mock upstream.
//!
//! Tolerance of fleet-wide rates: a GCRA bucket of N per minute starts full and refills one unit every 60/N s, so
//! a burst that takes `t` seconds admits N + floor(t × N / 60); with leases of one unit (N < 100) nothing is
//! lost to unspent leases. The RPM test below allows N + 1.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node_with, start_mock};

struct Fleet {
    app: TestApp,
    _mock: switchyard_mock_provider::MockHandle,
    key: String,
    key_id: i64,
    team_id: i64,
    nodes: Vec<TestNode>,
    _dirs: Vec<tempfile::TempDir>,
}

/// A tenant on the mock (model `m`, $2.50 / $10 per million tokens) and `n` nodes on `redis_url`.
async fn fleet(backend: Backend, n: usize, redis_url: &str) -> Fleet {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "m").await;
    let prefix = format!("switchyard-test:{}:", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let node = spawn_node_with(&app, dir.path(), |s| {
            s.limits.redis_url = Some(redis_url.to_owned());
            s.limits.redis_prefix = prefix.clone();
            s.limits.redis_timeout = Duration::from_millis(500);
            s.workers = 2;
        })
        .await;
        nodes.push(node);
        dirs.push(dir);
    }
    Fleet { key: tenant.key, key_id: tenant.key_id, team_id: tenant.team.id, app, _mock: mock, nodes, _dirs: dirs }
}

impl Fleet {
    async fn set_limits(&self, owner: &str, limits: Value) {
        self.app.put_limits(owner, &limits).await;
        for n in &self.nodes {
            n.wait_for_config(&self.app).await;
        }
    }
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn an_rpm_limit_holds_across_two_nodes_sharing_redis(backend: Backend) {
    let f = fleet(backend, 2, "redis://127.0.0.1:6379").await;
    f.set_limits(&format!("/keys/{}", f.key_id), json!({ "rpm": 10 })).await;

    let (mut admitted, mut refused) = (0, 0);
    for i in 0..30 {
        let res = f.nodes[i % 2].chat(&f.key, &chat_body("m", false)).await;
        match res.status() {
            StatusCode::OK => {
                admitted += 1;
                assert_eq!(header(&res, "x-ratelimit-limit-requests").as_deref(), Some("10"));
                assert!(header(&res, "x-ratelimit-remaining-requests").is_some());
                assert!(header(&res, "x-ratelimit-reset-requests").is_some());
            }
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
                assert!((1..=60).contains(&retry), "{retry}");
                assert_eq!(header(&res, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!((10..=11).contains(&admitted), "admitted {admitted} of 30 with an RPM of 10 across two nodes");
    assert_eq!(admitted + refused, 30);
    for n in &f.nodes {
        assert_eq!(n.node.limiter.stats().redis_fallbacks, 0, "every decision went through Redis");
    }
}

async fn a_concurrency_limit_holds_under_50_parallel_streams(backend: Backend) {
    let f = fleet(backend, 2, "redis://127.0.0.1:6379").await;
    f.set_limits(&format!("/teams/{}", f.team_id), json!({ "max_concurrent": 5 })).await;
    let mut body = chat_body("m", true);
    body["mock"] = json!({ "chunks": 20, "chunk_delay_ms": 40 });

    let origin = Instant::now();
    let requests = (0..50).map(|i| {
        let node = &f.nodes[i % 2];
        let body = body.clone();
        let key = f.key.clone();
        async move {
            let res = node.chat(&key, &body).await;
            let headers_at = origin.elapsed();
            let status = res.status();
            let text = res.text().await.unwrap();
            (status, headers_at, origin.elapsed(), text)
        }
    });
    let results = futures_util::future::join_all(requests).await;

    let admitted: Vec<_> = results.iter().filter(|r| r.0 == StatusCode::OK).collect();
    let refused = results.iter().filter(|r| r.0 == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(admitted.len() + refused, 50);
    assert!(admitted.len() >= 5, "the limit should be reached: {} admitted", admitted.len());
    for r in &admitted {
        assert!(r.3.trim_end().ends_with("data: [DONE]"), "an admitted stream was cut: {}", r.3);
    }
    // A stream holds its slot at least from its response headers until shortly before the client sees its end;
    // never more than 5 of those windows overlap.
    let margin = Duration::from_millis(50);
    let peak = admitted
        .iter()
        .map(|r| admitted.iter().filter(|o| o.1 <= r.1 && r.1 < o.2.saturating_sub(margin)).count())
        .max()
        .unwrap_or(0);
    assert!(peak <= 5, "{peak} streams ran at once with a limit of 5");

    // Every slot comes back: once all streams ended, the team gets 5 again (idle slots return within ~100 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = futures_util::future::join_all((0..5).map(|i| f.nodes[i % 2].chat(&f.key, &body))).await;
        let ok = held.iter().filter(|r| r.status() == StatusCode::OK).count();
        if ok == 5 {
            break;
        }
        drop(held);
        assert!(Instant::now() < deadline, "slots did not come back: {ok} of 5");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn budget_exhaustion_blocks_the_key_on_both_nodes(backend: Backend) {
    let f = fleet(backend, 2, "redis://127.0.0.1:6379").await;
    f.set_limits(&format!("/keys/{}", f.key_id), json!({ "budget": { "max_micros": 2000, "soft_threshold_pct": 50 } }))
        .await;
    let mut body = chat_body("m", false);
    body["max_tokens"] = json!(10);

    // Node A serves until the budget cannot cover one more worst case (each request really costs 63).
    let mut served = 0;
    loop {
        let res = f.nodes[0].chat(&f.key, &body).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(header(&res, "retry-after").is_some());
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], "insufficient_quota");
            assert_eq!(err["error"]["type"], "insufficient_quota");
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
        served += 1;
        assert!(served < 100, "the budget never ran out");
    }
    assert!(served * 63 <= 2000, "node A overspent: {served} requests");

    // Its usage reaches the control plane, which pushes the spend: node B refuses within 2 s.
    f.nodes[0].node.usage.flush().await;
    // Node B may admit requests until the snapshot with A's spend reaches it (the documented cross-node window).
    let reported = Instant::now();
    let mut served_by_b = 0;
    loop {
        let res = f.nodes[1].chat(&f.key, &body).await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let err: Value = res.json().await.unwrap();
            assert_eq!(err["error"]["code"], "insufficient_quota");
            break;
        }
        served_by_b += 1;
        assert!(reported.elapsed() < Duration::from_secs(2), "node B still serves the exhausted key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for n in &f.nodes {
        n.node.usage.flush().await;
    }
    let view = f.app.get_limits(&format!("/keys/{}", f.key_id)).await;
    let spent = view.budget_status.unwrap().spent_micros;
    // Node A alone never overspent (checked above); the fleet overshoots by at most what B admitted in the window.
    assert!(spent <= 2000 + served_by_b * 63, "the fleet overspent: {spent} with {served_by_b} admitted by node B");
    let alerts = f.app.alerts(&format!("team_id={}", f.team_id)).await;
    assert!(alerts.iter().any(|a| a.kind == "soft_threshold" && a.scope_id == f.key_id), "{alerts:?}");
}

async fn an_unreachable_redis_fails_open_and_the_counter_says_so(backend: Backend) {
    let f = fleet(backend, 1, "redis://127.0.0.1:1").await;
    f.set_limits(&format!("/keys/{}", f.key_id), json!({ "rpm": 1000, "max_concurrent": 10 })).await;
    let started = Instant::now();
    for _ in 0..5 {
        let res = f.nodes[0].chat(&f.key, &chat_body("m", false)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-limit-requests").as_deref(), Some("1000"));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "requests waited on Redis: {:?}", started.elapsed());
    let stats = f.nodes[0].node.limiter.stats();
    assert!(stats.redis_fallbacks >= 5, "{stats:?}");
    assert!(stats.redis_errors >= 1, "{stats:?}");
}

backend_tests!(
    an_rpm_limit_holds_across_two_nodes_sharing_redis,
    a_concurrency_limit_holds_under_50_parallel_streams,
    budget_exhaustion_blocks_the_key_on_both_nodes,
    an_unreachable_redis_fails_open_and_the_counter_says_so,
);

/// Redis stopped in the middle of traffic: two nodes sharing a private redis-server keep serving (fail-open, no
/// request waits on the dead connection), and the counters and `/metrics` say they fell back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test_requests_are_still_served() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = tokio::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed for this test (.ci/services installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let f = fleet(Backend::Sqlite, 2, &format!("redis://127.0.0.1:{port}")).await;
    f.set_limits(&format!("/keys/{}", f.key_id), json!({ "rpm": 100000, "max_concurrent": 50 })).await;
    for node in &f.nodes {
        for _ in 0..5 {
            assert_eq!(node.chat(&f.key, &chat_body("m", false)).await.status(), StatusCode::OK);
        }
    }

    redis.kill().await.unwrap();
    let stopped_at = Instant::now();
    for node in &f.nodes {
        for _ in 0..20 {
            assert_eq!(node.chat(&f.key, &chat_body("m", false)).await.status(), StatusCode::OK);
        }
    }
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "requests waited on Redis: {:?}", stopped_at.elapsed());
    // The nodes notice the dead connection in the background (lease refills, heartbeats); wait for that.
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in &f.nodes {
        loop {
            let _ = node.chat(&f.key, &chat_body("m", false)).await;
            let stats = node.node.limiter.stats();
            if stats.redis_errors > 0 && stats.redis_fallbacks > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "no fallback counted: {stats:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = reqwest::get(format!("{}/metrics", node.address)).await.unwrap().text().await.unwrap();
        let fallbacks = metrics
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_limit_redis_fallbacks_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_default();
        assert!(fallbacks > 0, "{metrics}");
    }
}
