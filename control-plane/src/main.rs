//! The control-plane binary: configuration → telemetry → build → print first-start credentials → serve until
//! Ctrl-C or SIGTERM.

use anyhow::Context as _;
use switchyard_control_plane::{Application, Settings, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env().context("reading configuration")?;
    telemetry::init_from_env()?;
    let app = Application::build(settings)
        .await
        .context("starting the control plane")?;
    if let Some(creds) = app.bootstrap() {
        // Printed once, on purpose, to stdout only: the database keeps nothing but hashes.
        println!("First start: created the operator account.");
        println!("  email:          {}", creds.email);
        println!("  password:       {}", creds.password.expose());
        println!("  operator token: {}", creds.operator_token.expose());
        println!("Store them now; they will not be shown again.");
    }
    let stop = app.stop_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.stop().await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
