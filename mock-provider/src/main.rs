//! The `switchyard-mock-provider` binary: flags → runtime → start → print the listening line → run until signalled.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use switchyard_mock_provider::{MockConfig, start};

const USAGE: &str = "usage: switchyard-mock-provider [--listen ADDR] [--chunks N] [--chunk-delay-ms D] \
                     [--latency-ms L] [--api-key K] [--threads N]";

struct Args {
    listen: SocketAddr,
    config: MockConfig,
    threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("switchyard-mock-provider: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads);
    }
    let result = builder.build().and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard-mock-provider: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let handle = start(args.listen, args.config).await?;
    {
        // Other processes learn the port from this line, so it must be complete and flushed before they wait.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mock provider listening on {}", handle.base_url())?;
        stdout.flush()?;
    }
    wait_for_signal().await?;
    handle.shutdown();
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

/// `Ok(None)` asks for the usage text. Accepts `--flag value` and `--flag=value`.
fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args { listen: SocketAddr::from(([127, 0, 0, 1], 0)), config: MockConfig::default(), threads: None };
    while let Some(arg) = raw.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| raw.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = parse(&flag, &value()?)?,
            "--chunks" => args.config.chunks = parse(&flag, &value()?)?,
            "--chunk-delay-ms" => args.config.chunk_delay = Duration::from_millis(parse(&flag, &value()?)?),
            "--latency-ms" => args.config.latency = Duration::from_millis(parse(&flag, &value()?)?),
            "--api-key" => args.config.api_key = Some(value()?),
            "--threads" => {
                let threads: usize = parse(&flag, &value()?)?;
                // tokio panics on a zero-thread runtime; refuse it here with a message instead.
                if threads == 0 {
                    return Err("--threads must be at least 1".to_owned());
                }
                args.threads = Some(threads);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(args))
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|error| format!("invalid value {value:?} for {flag}: {error}"))
}
