//! The `koi-github-indexer` command: parses arguments and calls the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use koi_github_indexer::cli::{self, Output, QueryCommand};
use koi_github_indexer::config::Config;

/// A KOI-net partial node that indexes GitHub events and serves them on localhost.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        default_value = "/etc/koi-github-indexer/config.toml"
    )]
    config: PathBuf,
    /// Query commands: the data dir holding the store (default: `node.data_dir` of the config).
    #[arg(long, global = true, help_heading = "Query options")]
    data_dir: Option<PathBuf>,
    /// Query commands: base URL of the running daemon's API (default: `http://` + `api.listen` of the config).
    #[arg(long, global = true, help_heading = "Query options")]
    api: Option<String>,
    /// Query commands: print JSON instead of a table.
    #[arg(long, global = true, help_heading = "Query options")]
    json: bool,
    /// Query commands: say on stderr whether the daemon's API or the store was used.
    #[arg(long, short, global = true, help_heading = "Query options")]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run,
    /// Validate a configuration file (and the key password variable) without starting.
    CheckConfig,
    #[command(flatten)]
    Query(QueryCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run => run(&cli.config),
        Command::CheckConfig => check_config(&cli.config),
        Command::Query(query) => run_query(&cli, query),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    koi_github_indexer::telemetry::init_logging(&config.log.level, config.log.format)?;
    tokio::runtime::Runtime::new()?.block_on(koi_github_indexer::daemon::run(config))
}

/// A query command: where the store and the API are come from the flags, else from the config file.
fn run_query(cli: &Cli, query: &QueryCommand) -> anyhow::Result<()> {
    let (data_dir, api) = match (&cli.data_dir, &cli.api) {
        (Some(dir), Some(api)) => (dir.clone(), api.clone()),
        (dir, api) => {
            let config = Config::load(&cli.config).context(
                "query commands read `node.data_dir` and `api.listen` from the config: pass --config, or both \
                 --data-dir and --api",
            )?;
            (
                dir.clone().unwrap_or(config.node.data_dir),
                api.clone()
                    .unwrap_or_else(|| format!("http://{}", config.api.listen)),
            )
        }
    };
    let output = Output {
        json: cli.json,
        verbose: cli.verbose,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(cli::run_query(query, &data_dir, &api, output))
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let password = config.key_password()?;
    // The key is decrypted as `run` would: a wrong or empty password fails here with the same message, not later.
    let key = config
        .node
        .data_dir
        .join(koi_github_indexer::node::identity::KEY_FILE);
    if key.exists() {
        koi_github_indexer::protocol::NodeKey::load(&key, &password)?;
    }
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: OK", path.display());
    Ok(())
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}
