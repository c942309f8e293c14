//! Security review items of issue 9 not covered elsewhere: console pages carry their protective headers, and no
//! secret (provider credential, API key, node or operator token) appears in either plane's metrics or health
//! answers after real traffic.

use reqwest::StatusCode;

use crate::helpers::{Backend, spawn_app};
use crate::node::{chat_body, spawn_node, start_mock};

async fn console_pages_forbid_framing_sniffing_and_caching(backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.client.get(app.url("/console/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "CSP: {csp}");
    assert!(csp.contains("default-src 'none'"), "CSP: {csp}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
}

async fn no_secret_reaches_metrics_or_health_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "guarded").await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;
    assert_eq!(node.chat(&tenant.key, &chat_body("guarded", false)).await.status(), StatusCode::OK);
    assert_eq!(node.chat(&tenant.key, &chat_body("guarded", true)).await.status(), StatusCode::OK);

    let secrets = [
        tenant.upstream_credential.as_str(),
        tenant.key.as_str(),
        app.node_token.as_str(),
        app.operator_token.as_str(),
        app.encryption_key.as_str(),
    ];
    for url in [
        app.url("/metrics"),
        app.url("/readyz"),
        app.url("/healthz"),
        format!("{}/metrics", node.address),
        format!("{}/readyz", node.address),
    ] {
        let body = app.client.get(&url).send().await.unwrap().text().await.unwrap();
        for secret in secrets {
            assert!(!body.contains(secret), "{url} leaks a secret");
        }
    }
    node.stop().await;
}

backend_tests!(console_pages_forbid_framing_sniffing_and_caching, no_secret_reaches_metrics_or_health_answers);
