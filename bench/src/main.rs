//! `switchyard-bench`: subcommands for each bench; `bench/run` calls them in order. Thin: parse flags, build the
//! runtime, call the library, print and write the report.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use switchyard_bench::args::Args;
use switchyard_bench::procstat::Watched;
use switchyard_bench::{client, console, finance, ingest, load, relay, seed, snapshot, suite};

const USAGE: &str = "usage: switchyard-bench <command> [flags]   (see BENCHMARKS.md; bench/run drives them all)

  seed        --cp URL --operator-token T --mock-url URL          seed team/provider/model/key; prints the key
  wait-ready  --url URL [--version V | --path /healthz] [--timeout-secs S]
                                                                  wait for a node's /readyz (or GET path → 200)
  free-port                                                       print a free loopback port
  relay       --upstream URL [--listen URL]                        byte relay (the floor of any proxy)
  suite       --mock URL --governed URL --ungoverned URL --key K
              --mock-pid P --governed-pid P --ungoverned-pid P [--control-plane-pid P] [--relay URL --relay-pid P]
              [--quick] [--only a,b] [--except a,b] [--open-streams N] [--out FILE] [--json FILE]
              [--merge FILE]   (runs from an earlier --json, rendered together with these)
  load        --url URL [--key K] [--kind chat|stream|slow|open] [--concurrency N] [--warmup S] [--duration S]
              [--watch role=PID,...]
  snapshot    --sizes 100000,1000000 --mock-url URL [--node-bin PATH] [--quick] [--out FILE]
  ingest      --cp URL --node-token T --operator-token T [--nodes 1,8,32] [--records N] [--batch N]
              [--cp-pid P] [--out FILE]
  console     --cp URL --email E --password P [--team-id N] [--model-id N] [--provider-id N] [--runs N]
              [--records N] [--out FILE]               time every main console page (seed the database first)
  finance     --cp URL --operator-token T --database-url postgres://... [--cp-pid P] [--teams N] [--records N]
              [--keys-per-team N] [--month yyyy-mm] [--concurrency N] [--out FILE]
                                                       seed a month in Postgres; time invoices, reconciliation, export
  (flag --threads N before or after the command: load generator worker threads, default 2)";

fn main() -> anyhow::Result<()> {
    let mut raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.is_empty() || raw[0] == "-h" || raw[0] == "--help" {
        println!("{USAGE}");
        return Ok(());
    }
    let command = raw.remove(0);
    let args = Args::parse(raw, &["quick"])?;
    let threads = args.parsed::<usize>("threads")?.unwrap_or(2).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    runtime.block_on(run(&command, &args))
}

fn write_out(args: &Args, markdown: &str) -> anyhow::Result<()> {
    println!("{markdown}");
    if let Some(path) = args.opt("out") {
        std::fs::write(path, markdown).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

async fn run(command: &str, args: &Args) -> anyhow::Result<()> {
    match command {
        "seed" => {
            let cp = client::addr_of(args.req("cp")?)?;
            let key = seed::seed(cp, args.req("operator-token")?, args.req("mock-url")?).await?;
            println!("{key}");
        }
        "wait-ready" => {
            let addr = client::addr_of(args.req("url")?)?;
            let timeout = Duration::from_secs(args.parsed("timeout-secs")?.unwrap_or(60));
            match args.opt("path") {
                Some(path) => client::wait_ok(addr, path, timeout).await?,
                None => {
                    client::wait_ready(addr, args.parsed("version")?.unwrap_or(1), timeout).await?;
                }
            }
        }
        "relay" => {
            let listen = client::addr_of(args.opt("listen").unwrap_or("http://127.0.0.1:0"))?;
            relay::run(listen, client::addr_of(args.req("upstream")?)?).await?;
        }
        "free-port" => println!("{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()),
        "suite" => {
            let cfg = suite::SuiteConfig {
                mock: client::addr_of(args.req("mock")?)?,
                governed: client::addr_of(args.req("governed")?)?,
                ungoverned: client::addr_of(args.req("ungoverned")?)?,
                key: args.req("key")?.to_owned(),
                mock_pid: args.parsed("mock-pid")?.context("--mock-pid is required")?,
                governed_pid: args.parsed("governed-pid")?.context("--governed-pid is required")?,
                ungoverned_pid: args.parsed("ungoverned-pid")?.context("--ungoverned-pid is required")?,
                control_plane_pid: args.parsed("control-plane-pid")?,
                relay: match (args.opt("relay"), args.parsed::<u32>("relay-pid")?) {
                    (Some(url), Some(pid)) => Some((client::addr_of(url)?, pid)),
                    (None, None) => None,
                    _ => bail!("--relay and --relay-pid go together"),
                },
                quick: args.flag("quick"),
                only: args.list("only")?.unwrap_or_default(),
                except: args.list("except")?.unwrap_or_default(),
                open_streams: args.parsed("open-streams")?.unwrap_or(if args.flag("quick") { 2000 } else { 10_000 }),
            };
            let idle = suite::idle_rss(cfg.governed_pid);
            let mut runs: Vec<suite::Run> = match args.opt("merge") {
                Some(path) => serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {path}"))?)?,
                None => Vec::new(),
            };
            runs.extend(suite::run(&cfg).await?);
            if let Some(path) = args.opt("json") {
                std::fs::write(path, serde_json::to_vec_pretty(&runs)?).with_context(|| format!("writing {path}"))?;
            }
            write_out(args, &suite::render(&runs, idle))?;
        }
        "load" => {
            let kind = match args.opt("kind").unwrap_or("chat") {
                "chat" => suite::Kind::Chat,
                "stream" => suite::Kind::Stream,
                "slow" => suite::Kind::Slow,
                "open" => suite::Kind::Open,
                other => bail!("unknown --kind {other}"),
            };
            let watch = args
                .list::<String>("watch")?
                .unwrap_or_default()
                .into_iter()
                .map(|w| {
                    let (role, pid) = w.split_once('=').context("--watch takes role=PID")?;
                    Ok(Watched { role: role.to_owned(), pid: pid.parse()? })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = load::LoadSpec {
                addr: client::addr_of(args.req("url")?)?,
                path: "/v1/chat/completions".into(),
                authorization: args.opt("key").map(|k| format!("Bearer {k}")),
                body: suite::body(kind, args.flag("quick")),
                stream: matches!(kind, suite::Kind::Stream | suite::Kind::Open),
                concurrency: args.parsed("concurrency")?.unwrap_or(32),
                warmup: Duration::from_secs(args.parsed("warmup")?.unwrap_or(2)),
                duration: Duration::from_secs(args.parsed("duration")?.unwrap_or(10)),
                request_timeout: Duration::from_secs(30),
                watch,
            };
            let report = load::run(spec).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        "snapshot" => {
            let cfg = snapshot::SnapshotConfig {
                sizes: args.list("sizes")?.unwrap_or_else(|| vec![100_000, 1_000_000]),
                node_bin: args.opt("node-bin").map(PathBuf::from),
                mock_url: args.req("mock-url")?.to_owned(),
                quick: args.flag("quick"),
            };
            write_out(args, &snapshot::run(&cfg).await?)?;
        }
        "catalog-rss" => {
            let keys = args.parsed("keys")?.context("--keys is required")?;
            println!("{}", snapshot::catalog_rss(keys)?);
        }
        "ingest" => {
            let cfg = ingest::IngestConfig {
                cp: client::addr_of(args.req("cp")?)?,
                node_token: args.req("node-token")?.to_owned(),
                operator_token: args.req("operator-token")?.to_owned(),
                nodes: args.list("nodes")?.unwrap_or_else(|| vec![1, 8, 32]),
                records: args.parsed("records")?.unwrap_or(256_000),
                batch: args.parsed("batch")?.unwrap_or(1000),
                cp_pid: args.parsed("cp-pid")?,
            };
            write_out(args, &ingest::run(&cfg).await?)?;
        }
        "console" => {
            let cfg = console::ConsoleConfig {
                cp: client::addr_of(args.req("cp")?)?,
                email: args.req("email")?.to_owned(),
                password: args.req("password")?.to_owned(),
                runs: args.parsed("runs")?.unwrap_or(20),
                team_id: args.parsed("team-id")?.unwrap_or(1),
                model_id: args.parsed("model-id")?.unwrap_or(1),
                provider_id: args.parsed("provider-id")?.unwrap_or(1),
                records: args.parsed("records")?.unwrap_or(0),
            };
            write_out(args, &console::run(&cfg).await?)?;
        }
        "finance" => {
            let cfg = finance::FinanceConfig {
                cp: client::addr_of(args.req("cp")?)?,
                operator_token: args.req("operator-token")?.to_owned(),
                database_url: args.req("database-url")?.to_owned(),
                cp_pid: args.parsed("cp-pid")?,
                teams: args.parsed("teams")?.unwrap_or(1000),
                keys_per_team: args.parsed("keys-per-team")?.unwrap_or(5),
                records: args.parsed("records")?.unwrap_or(10_000_000),
                month: args.opt("month").map(str::to_owned),
                concurrency: args.parsed("concurrency")?.unwrap_or(4),
            };
            write_out(args, &finance::run(&cfg).await?)?;
        }
        other => bail!("unknown command `{other}`\n{USAGE}"),
    }
    Ok(())
}
