//! The `handler` binary: parse the command line, set up logging, hand over
//! to the library.

use clap::Parser;
use dev8::auth::strength::{self, Estimator};
use dev8::config::{Cli, Command};
use dev8::startup::{Application, Overrides, shutdown_signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("DEV8_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .with_target(false)
        // Colour only on a terminal: the Functions host and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .finish()
        // Copies log lines of a Functions invocation into its response's `Logs`.
        .with(dev8::host::logs::InvocationLogs)
        .init();
    match cli.command {
        Command::PasswordStrength => {
            strength::child_main(std::io::stdin().lock(), std::io::stdout().lock())
        }
        Command::Serve(mut args) => {
            args.settings.password_estimator = child_estimator();
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
        Command::Functions(mut args) => {
            args.settings.password_estimator = child_estimator();
            dev8::host::run(args, shutdown_signal()).await
        }
        Command::Agent(args) => dev8::agent::run(args.into(), shutdown_signal()).await,
        Command::Doctor(args) => {
            if !dev8::doctor::run(args).await? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Package(args) => {
            let zip = dev8::host::package::package(&args.root, args.binary.as_deref(), &args.out)?;
            println!(
                "Functions app laid out in {} and zipped to {}",
                args.out.display(),
                zip.display()
            );
            Ok(())
        }
    }
}

/// New passwords are estimated in a child of this binary, so zxcvbn's
/// dictionaries never stay in the server's memory (`auth::strength`).
fn child_estimator() -> Estimator {
    std::env::current_exe()
        .map(Estimator::Child)
        .unwrap_or_default()
}
