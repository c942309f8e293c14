//! Upstream providers' rate limits end to end (issue 11): capacity caps on a provider credential, enforced
//! fleet-wide by two real nodes sharing the Redis on 127.0.0.1:6379 (each test under its own key prefix); the
//! provider's own 429s cooling a target down on every node; and the gateway's 429 when every target is exhausted.
//! The mocks enforce their own limits (`MockHandle::set_rate_limit`) and answer 429 + `Retry-After` past them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard_mock_provider::{MockHandle, RateLimit};

use crate::helpers::{Backend, TestApp, expect_json, spawn_app};
use crate::node::{TestNode, chat_body, spawn_node_with, start_mock};

/// Model `m` on two mocks: `primary` (priority 0) and `fallback` (priority 1), each its own provider with the
/// given caps; `nodes` nodes sharing Redis under a fresh prefix.
struct Setup {
    app: TestApp,
    primary: MockHandle,
    fallback: MockHandle,
    key: String,
    nodes: Vec<TestNode>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn create_provider(app: &TestApp, name: &str, base_url: &str, caps: Value) -> Value {
    let body = json!({ "name": name, "base_url": base_url, "api_key": "sk-upstream", "caps": caps });
    expect_json(app.api_post("/providers", &body).await, StatusCode::CREATED).await
}

async fn setup(backend: Backend, primary_caps: Value, fallback_caps: Value, nodes: usize) -> Setup {
    let app = spawn_app(backend).await;
    let (primary, fallback) = (start_mock().await, start_mock().await);
    let tenant = app.setup_tenant(&primary.base_url(), "unused").await;
    let p1 = create_provider(&app, "primary", &primary.base_url(), primary_caps).await;
    let p2 = create_provider(&app, "fallback", &fallback.base_url(), fallback_caps).await;
    app.create_model(&json!({
        "name": "m",
        "input_price_per_mtok": 1_000_000,
        "output_price_per_mtok": 1_000_000,
        "targets": [
            { "provider_id": p1["id"], "upstream_model": "primary-model", "priority": 0 },
            { "provider_id": p2["id"], "upstream_model": "fallback-model", "priority": 1 },
        ],
    }))
    .await;
    let prefix = format!("switchyard-test:{}:", uuid::Uuid::new_v4().simple());
    let mut out = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..nodes {
        let dir = tempfile::tempdir().unwrap();
        let node = spawn_node_with(&app, dir.path(), |s| {
            s.limits.redis_url = Some("redis://127.0.0.1:6379".to_owned());
            s.limits.redis_prefix = prefix.clone();
            s.limits.redis_timeout = Duration::from_millis(500);
        })
        .await;
        node.wait_for_config(&app).await;
        out.push(node);
        dirs.push(dir);
    }
    Setup { app, primary, fallback, key: tenant.key, nodes: out, _dirs: dirs }
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn metrics(node: &TestNode) -> String {
    reqwest::get(format!("{}/metrics", node.address)).await.unwrap().text().await.unwrap()
}

async fn caps_are_configured_on_providers_and_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let p = create_provider(&app, "capped", "http://127.0.0.1:9/v1", json!({ "rpm": 500, "max_concurrency": 8 })).await;
    assert_eq!(p["caps"], json!({ "rpm": 500, "tpm": null, "max_concurrency": 8, "team_share_pct": null }));
    let id = p["id"].as_i64().unwrap();
    let update = json!({ "name": "capped", "base_url": "http://127.0.0.1:9/v1", "caps": { "tpm": 90000 } });
    let p: Value = expect_json(app.api_put(&format!("/providers/{id}"), &update).await, StatusCode::OK).await;
    assert_eq!(p["caps"], json!({ "rpm": null, "tpm": 90000, "max_concurrency": null, "team_share_pct": null }));
    let snapshot = app.latest_snapshot().await;
    let entry = snapshot.providers.iter().find(|e| e.id == id).unwrap();
    assert_eq!((entry.caps.rpm, entry.caps.tpm, entry.caps.max_concurrency), (None, Some(90000), None));
    let bad = json!({ "name": "zero", "base_url": "http://127.0.0.1:9/v1", "caps": { "rpm": 0 } });
    let res = app.api_post("/providers", &bad).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["param"], "caps.rpm", "{body}");
    // A team share is a percentage: 1-100, carried to the snapshot.
    for pct in [0, 101] {
        let bad = json!({ "name": "share", "base_url": "http://127.0.0.1:9/v1", "caps": { "team_share_pct": pct } });
        let res = app.api_post("/providers", &bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "team_share_pct {pct}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["param"], "caps.team_share_pct", "{body}");
    }
    let shared =
        json!({ "name": "shared", "base_url": "http://127.0.0.1:9/v1", "caps": { "rpm": 20, "team_share_pct": 50 } });
    let p: Value = expect_json(app.api_post("/providers", &shared).await, StatusCode::CREATED).await;
    assert_eq!(p["caps"]["team_share_pct"], 50);
    let snapshot = app.latest_snapshot().await;
    let entry = snapshot.providers.iter().find(|e| Some(e.id) == p["id"].as_i64()).unwrap();
    assert_eq!((entry.caps.rpm, entry.caps.team_share_pct), (Some(20), Some(50)));
}

async fn a_burst_under_the_gateways_cap_never_makes_the_provider_answer_429(backend: Backend) {
    // The provider takes 10 requests a minute; the gateway caps the credential at 10 RPM fleet-wide. A burst of
    // 30 over two nodes: 10 go to the primary, never a 429 from it, the rest to the fallback.
    let s = setup(backend, json!({ "rpm": 10 }), json!({}), 2).await;
    s.primary.set_rate_limit(Some(RateLimit { requests: 10, window: Duration::from_secs(60) }));
    let mut on_fallback = 0;
    for i in 0..30 {
        let res = s.nodes[i % 2].chat(&s.key, &chat_body("m", false)).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        if header(&res, "x-switchyard-upstream").as_deref() == Some("fallback/fallback-model") {
            on_fallback += 1;
        }
    }
    assert_eq!(s.primary.rate_limited(), 0, "the provider never had to refuse");
    assert_eq!(s.primary.requests(), 10, "the cap admits the whole burst allowance and no more");
    assert_eq!((on_fallback, s.fallback.requests()), (20, 20));
    let m = metrics(&s.nodes[0]).await;
    assert!(m.contains(r#"switchyard_upstream_capacity_total{provider="primary",result="throttled"}"#), "{m}");
}

async fn a_429_from_the_provider_cools_the_target_down_on_both_nodes(backend: Backend) {
    let s = setup(backend, json!({}), json!({}), 2).await;
    s.primary.set_rate_limit(Some(RateLimit { requests: 2, window: Duration::from_secs(60) }));
    for _ in 0..2 {
        let res = s.nodes[0].chat(&s.key, &chat_body("m", false)).await;
        assert_eq!(header(&res, "x-switchyard-upstream").as_deref(), Some("primary/primary-model"));
    }
    // The third hits the provider's limit: 429 + Retry-After ~60 s; the same request is served by the fallback.
    let res = s.nodes[0].chat(&s.key, &chat_body("m", false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-switchyard-upstream").as_deref(), Some("fallback/fallback-model"));
    assert_eq!((s.primary.requests(), s.primary.rate_limited()), (3, 1));
    // Cooled down on this node and on the other one (through Redis): neither sends the primary anything more.
    for i in 0..10 {
        let res = s.nodes[i % 2].chat(&s.key, &chat_body("m", false)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-switchyard-upstream").as_deref(), Some("fallback/fallback-model"), "request {i}");
    }
    assert_eq!(s.primary.requests(), 3, "the cooling target got no traffic");
    let m = metrics(&s.nodes[0]).await;
    assert!(
        m.contains(r#"switchyard_upstream_cooldowns_total{provider="primary",upstream_model="primary-model"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"switchyard_upstream_advertised_limit{kind="requests",provider="primary"} 2"#), "{m}");
    let m = metrics(&s.nodes[1]).await;
    assert!(m.contains(r#"switchyard_upstream_capacity_total{provider="primary",result="cooling"}"#), "{m}");
}

async fn with_every_target_exhausted_the_client_gets_429_with_the_soonest_retry_after(backend: Backend) {
    // Primary: the gateway caps it at 1 RPM (free again in 60 s). Fallback: the provider allows 1 request per
    // 20 s and then answers 429 + Retry-After, which cools it down for ~20 s.
    let s = setup(backend, json!({ "rpm": 1 }), json!({}), 1).await;
    s.fallback.set_rate_limit(Some(RateLimit { requests: 1, window: Duration::from_secs(20) }));
    let node = &s.nodes[0];
    let served: Vec<Option<String>> = {
        let mut v = Vec::new();
        for _ in 0..2 {
            let res = node.chat(&s.key, &chat_body("m", false)).await;
            assert_eq!(res.status(), StatusCode::OK);
            v.push(header(&res, "x-switchyard-upstream"));
        }
        v
    };
    assert_eq!(served, [Some("primary/primary-model".into()), Some("fallback/fallback-model".into())]);
    // The fallback's own 429 comes back as it was: no other target had room.
    let res = node.chat(&s.key, &chat_body("m", false)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.fallback.rate_limited(), 1);

    // Now both are exhausted: the gateway answers at once, without calling either, with the soonest free time.
    let res = node.chat(&s.key, &chat_body("m", false)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((18..=20).contains(&retry), "Retry-After {retry}: the fallback is free in ~20 s, the primary in ~60 s");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!((s.primary.requests(), s.fallback.requests()), (1, 2), "no upstream call bound to fail");
}

/// How far from its exact share a team's count on a shared credential may land: a unit refunded or leased on one
/// node that the other node's requests cannot use, or one refilled while the burst is in flight (README).
const SHARE_TOLERANCE: u64 = 2;

async fn two_teams_bursting_at_once_each_get_their_share_of_a_capped_credential(backend: Backend) {
    // The primary credential takes 20 RPM, at most 50% per team. Two teams burst at the same time over two nodes,
    // the first with 30 requests, the second with 10: without shares the first would take ~15 of the primary;
    // with them each gets ~10, the rest goes to the fallback, and the provider never refuses.
    let s = setup(backend, json!({ "rpm": 20, "team_share_pct": 50 }), json!({}), 2).await;
    s.primary.set_rate_limit(Some(RateLimit { requests: 20, window: Duration::from_secs(60) }));
    let team = s.app.create_team("second team").await;
    let other = s.app.issue_key(team.id, &json!({ "name": "second key" })).await.key;
    let body = chat_body("m", false);
    let (body, first) = (&body, &s.key);
    let burst = (0..40).map(|i| {
        let (node, key) = (&s.nodes[i % 2], if i % 4 < 3 { first } else { &other });
        async move { (key == first, node.chat(key, body).await) }
    });
    let mut on_primary = [0u64; 2];
    for (first_team, res) in futures_util::future::join_all(burst).await {
        assert_eq!(res.status(), StatusCode::OK);
        if header(&res, "x-switchyard-upstream").as_deref() == Some("primary/primary-model") {
            on_primary[usize::from(!first_team)] += 1;
        }
    }
    for (team, n) in on_primary.iter().enumerate() {
        assert!(n.abs_diff(10) <= SHARE_TOLERANCE, "team {team} got {n} of the primary, {on_primary:?}");
    }
    assert_eq!(s.primary.requests(), on_primary[0] + on_primary[1]);
    assert!(s.primary.requests() <= 20, "never past the credential's cap");
    assert_eq!(s.primary.rate_limited(), 0, "the provider never had to refuse");
    assert_eq!(s.fallback.requests(), 40 - s.primary.requests());
}

backend_tests!(
    caps_are_configured_on_providers_and_validated,
    two_teams_bursting_at_once_each_get_their_share_of_a_capped_credential,
    a_burst_under_the_gateways_cap_never_makes_the_provider_answer_429,
    a_429_from_the_provider_cools_the_target_down_on_both_nodes,
    with_every_target_exhausted_the_client_gets_429_with_the_soonest_retry_after,
);
