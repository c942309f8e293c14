//! The official OpenAI Python SDK, unmodified, against a running node (chat, stream, errors). The script is
//! `tests/sdk/openai_sdk.py`; `.ci/services` installs the `openai` package. A missing interpreter or package
//! fails the test: it never skips.

use crate::helpers::{Backend, spawn_app};
use crate::node::{spawn_node, start_mock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_sdk_works_unmodified() {
    let app = spawn_app(Backend::Sqlite).await;
    let mock = start_mock().await;
    let tenant = app.setup_tenant(&mock.base_url(), "sdk-model").await;
    let restricted =
        app.issue_key(tenant.team.id, &serde_json::json!({ "name": "restricted", "allowed_models": ["other"] })).await;
    let dir = tempfile::tempdir().unwrap();
    let node = spawn_node(&app, dir.path()).await;
    node.wait_for_config(&app).await;

    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    // At run time: a test binary reused from another checkout of the same tree must still find the script.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let script = format!("{manifest_dir}/tests/sdk/openai_sdk.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("SWITCHYARD_BASE_URL", format!("{}/v1", node.address))
        .env("SWITCHYARD_API_KEY", &tenant.key)
        .env("SWITCHYARD_MODEL", "sdk-model")
        .env("SWITCHYARD_RESTRICTED_KEY", &restricted.key)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e} (install Python 3 and `pip install openai`)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the OpenAI SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("checks ok: chat, stream, stream_with_usage, tools_round_trip, response_format, embeddings, models, responses_api, bad_key, unknown_model, forbidden_model, bad_request"), "{stdout}");
    node.stop().await;
}
