//! `switchyard-control-plane quickstart`: the embedded default in one command. Starts the control plane on
//! SQLite, the mock upstream and one data-plane node as child processes (the binaries built beside this one),
//! seeds a demo team, provider, model and a fresh key, and prints the operator login and a ready-to-curl example.
//! Ctrl-C stops everything; the state stays in the data directory for the next start.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::domain::keys::NewKey;
use crate::domain::models::{ModelInput, TargetInput};
use crate::domain::providers::ProviderInput;
use crate::domain::teams::NewTeam;
use crate::domain::{Actor, Store, keys, models, nodes, providers, teams};
use crate::{Application, Settings};

const DEMO_TEAM: &str = "demo";
const DEMO_PROVIDER: &str = "demo-mock";
const DEMO_MODEL: &str = "demo-chat";
/// Where the quickstart's node listens (`SWITCHYARD_QUICKSTART_NODE_LISTEN` overrides).
const NODE_LISTEN: &str = "127.0.0.1:8080";

pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let node_token = settings.resolve_secrets()?.node_token;
    let data_dir = settings.data_dir.clone();
    let app = Application::build(settings).await.context("starting the control plane")?;
    let cp_url = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let bootstrap = app.bootstrap().cloned();
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());

    let (mut mock, mock_url) = start_mock().await?;
    let key = seed(&store, &mock_url).await.context("seeding the demo configuration")?;

    let node_listen = std::env::var("SWITCHYARD_QUICKSTART_NODE_LISTEN").unwrap_or_else(|_| NODE_LISTEN.to_owned());
    let mut node = Command::new(sibling("switchyard-data-plane")?)
        .env("SWITCHYARD_CONTROL_PLANE_URL", &cp_url)
        .env("SWITCHYARD_NODE_TOKEN", node_token.expose())
        .env("SWITCHYARD_NODE_ID", "quickstart-node")
        .env("SWITCHYARD_LISTEN", &node_listen)
        .env("SWITCHYARD_STATE_DIR", data_dir.join("node"))
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
        .kill_on_drop(true)
        .spawn()
        .context("starting the data-plane node")?;
    wait_until_node_applied(&store, &mut node).await?;

    println!();
    println!("Switchyard is running (SQLite at {}).", data_dir.display());
    println!("  web console:               {cp_url}/console");
    println!("  control plane (admin API): {cp_url}/api/v1");
    println!("  data plane (OpenAI API):   http://{node_listen}/v1");
    match &bootstrap {
        Some(creds) => {
            println!("  operator login:  {} / {}", creds.email, creds.password.expose());
            println!("  operator token:  {}", creds.operator_token.expose());
            println!("  (shown once: the database keeps only hashes)");
        }
        None => println!(
            "  operator credentials were printed on the first start (delete {} to start over)",
            data_dir.display()
        ),
    }
    println!();
    println!("Try it (demo key for team `{DEMO_TEAM}`, model `{DEMO_MODEL}` served by the built-in mock upstream):");
    println!();
    println!("  curl http://{node_listen}/v1/chat/completions \\");
    println!("    -H 'Authorization: Bearer {key}' \\");
    println!("    -H 'Content-Type: application/json' \\");
    println!("    -d '{{\"model\":\"{DEMO_MODEL}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'");
    println!();
    println!("Usage shows up at {cp_url}/api/v1/usage (Authorization: Bearer <operator token>). Ctrl-C stops.");

    tokio::select! {
        () = shutdown => {}
        status = node.wait() => eprintln!("the data-plane node exited: {status:?}"),
        status = mock.wait() => eprintln!("the mock provider exited: {status:?}"),
    }
    // The node first, so it reports its last usage to the control plane before that stops.
    terminate(&mut node).await;
    stop.stop().await;
    let _ = server.await;
    terminate(&mut mock).await;
    Ok(())
}

/// A binary built beside this one (`cargo build --bins` puts them together).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found; build all binaries first (`cargo build --bins`, or `make run`)", path.display());
    }
    Ok(path)
}

async fn start_mock() -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(sibling("switchyard-mock-provider")?)
        .args(["--listen", "127.0.0.1:0", "--chunks", "12", "--chunk-delay-ms", "40"])
        .stdout(Stdio::piped())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the mock provider")?;
    let stdout = child.stdout.take().context("mock provider stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("the mock provider did not report its address")??
        .context("the mock provider exited")?;
    let url = line
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http://"))
        .with_context(|| format!("unexpected mock provider output: {line}"))?
        .to_owned();
    Ok((child, url))
}

/// Demo team, provider (re-pointed at this run's mock), priced model; and a new key, since a key's plaintext
/// is shown only when it is issued.
async fn seed(store: &Store, mock_url: &str) -> anyhow::Result<String> {
    let actor = Actor::system();
    let team = match teams::list(store).await?.into_iter().find(|t| t.slug == DEMO_TEAM) {
        Some(t) => t,
        None => teams::create(store, &actor, NewTeam { name: "Demo".into(), slug: Some(DEMO_TEAM.into()) }).await?,
    };
    let provider_input = ProviderInput {
        name: DEMO_PROVIDER.into(),
        kind: Some("openai_compatible".into()),
        base_url: mock_url.into(),
        api_key: Some("mock-upstream-credential".into()),
        timeouts: Default::default(),
        caps: Default::default(),
        model_caps: Vec::new(),
    };
    let provider = match providers::list(store).await?.into_iter().find(|p| p.name == DEMO_PROVIDER) {
        Some(p) => providers::update(store, &actor, p.id, provider_input).await?,
        None => providers::create(store, &actor, provider_input).await?,
    };
    if !models::list(store).await?.iter().any(|m| m.name == DEMO_MODEL) {
        models::create(
            store,
            &actor,
            ModelInput {
                name: DEMO_MODEL.into(),
                // $0.50 in / $1.50 out per million tokens.
                input_price_per_mtok: Some(500_000),
                output_price_per_mtok: Some(1_500_000),
                targets: vec![TargetInput {
                    provider_id: provider.id,
                    upstream_model: "mock-model".into(),
                    weight: None,
                    priority: None,
                }],
                allowed_teams: None,
            },
        )
        .await?;
    }
    let issued = keys::issue(
        store,
        &actor,
        team.id,
        NewKey {
            name: format!("quickstart {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")),
            allowed_models: None,
            expires_at: None,
        },
    )
    .await?;
    Ok(issued.secret)
}

/// Waits until the node reports (through its snapshot poll) that it serves the current configuration.
async fn wait_until_node_applied(store: &Store, node: &mut Child) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = nodes::list(store).await?;
        if list.data.iter().any(|n| n.node_id == "quickstart-node" && n.applied_version >= list.current_version) {
            return Ok(());
        }
        if let Some(status) = node.try_wait()? {
            bail!("the data-plane node exited during start-up: {status}");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the data-plane node did not apply the configuration within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, so the child drains and flushes; SIGKILL if it is still there after 15 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
