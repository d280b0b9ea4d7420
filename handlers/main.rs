//! The `handler` binary: parse the command line, set up logging, hand over
//! to the library.

use clap::Parser;
use dev8::config::{Cli, Command};
use dev8::startup::{Application, Overrides, shutdown_signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DEV8_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .with_target(false)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(
                args.settings,
                args.port,
                &args.data_dir,
                Overrides::default(),
            )
            .await?;
            let url = app.platform().policy.public_url.clone();
            tracing::info!(%url, data_dir = %args.data_dir.display(), "Dev8 is running");
            println!("Dev8 dashboard: {url}/");
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Agent(args) => dev8::agent::run(args.into_config(), shutdown_signal()).await,
    }
}
