//! The `koi-github-indexer` command: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use koi_github_indexer::config::Config;

/// A KOI-net partial node that indexes GitHub events and serves them on localhost.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/koi-github-indexer/config.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file (and the key password variable) without starting.
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, default_value = "/etc/koi-github-indexer/config.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let config = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => return fail(&e.into()),
            };
            init_logging(&config);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => return fail(&e.into()),
            };
            match runtime.block_on(koi_github_indexer::daemon::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig { config } => match check_config(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    config.key_password()?;
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: OK", path.display());
    Ok(())
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        koi_github_indexer::config::LogFormat::Json => builder.json().init(),
        koi_github_indexer::config::LogFormat::Text => builder.init(),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}
