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
    /// Configuration file. Without it: ./config.toml, then $KOI_GITHUB_INDEXER_CONFIG, then
    /// /etc/koi-github-indexer/config.toml, the first that exists.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run,
    /// Validate a configuration file, the key password variable and the key itself, without starting.
    CheckConfig,
    #[command(flatten)]
    Query(QueryCommand),
}

/// Where the configuration is looked for when `--config` is not given, in order.
fn config_candidates() -> Vec<(String, Option<PathBuf>)> {
    vec![
        ("./config.toml".into(), Some(PathBuf::from("config.toml"))),
        (
            "$KOI_GITHUB_INDEXER_CONFIG".into(),
            std::env::var_os("KOI_GITHUB_INDEXER_CONFIG").map(PathBuf::from),
        ),
        (
            "/etc/koi-github-indexer/config.toml".into(),
            Some(PathBuf::from("/etc/koi-github-indexer/config.toml")),
        ),
    ]
}

/// The configuration file: `--config`, else the first candidate that exists; the error lists what was tried.
fn config_path(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let candidates = config_candidates();
    for (_, path) in &candidates {
        if let Some(path) = path.as_ref().filter(|p| p.is_file()) {
            return Ok(path.clone());
        }
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|(name, path)| match path {
            Some(p) if name.starts_with('$') => format!("{name} ({})", p.display()),
            Some(_) => name.clone(),
            None => format!("{name} (not set)"),
        })
        .collect();
    anyhow::bail!(
        "no configuration file found; tried {}. Pass --config FILE, or copy config.toml.example to ./config.toml",
        tried.join(", ")
    )
}

/// Turns glibc's fastbins off before anything is allocated. The write path frees many small blocks between large
/// ones (sled copies a leaf node on each change), and with fastbins on, glibc spends much of its time merging them
/// back (`malloc_consolidate`, `unlink_chunk`: about 13 % of the daemon's samples in a 50,000-event catch-up, 37 %
/// in malloc and free all told). Measured end to end: 564 instead of 721–807 µs of CPU per event at 50,000, same
/// peak RSS (docs/benchmarks.md). A no-op on other C libraries.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it has no memory-safety preconditions, and it runs before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // Everything this process creates (the store, the inbox, the key, exports) is private to its user.
    koi_github_indexer::storage::private_umask();
    let cli = Cli::parse();
    let explicit = cli.config.as_deref();
    let result = match &cli.command {
        Command::Run => config_path(explicit).and_then(|config| run(&config)),
        Command::CheckConfig => config_path(explicit).and_then(|config| check_config(&config)),
        Command::Query(query) => run_query(explicit, query),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn run(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    // Read the secrets and wipe them from the environment while this is the only thread: the runtime below starts
    // the others, and /proc/PID/environ would show the secrets for the life of the process.
    let secrets = config.take_secrets()?;
    config.refuse_placeholders(&secrets)?;
    koi_github_indexer::telemetry::init_logging(&config.log.level, config.log.format)?;
    tokio::runtime::Runtime::new()?.block_on(koi_github_indexer::daemon::run(config, secrets))
}

/// A query command: where the store and the API are come from the flags, else from the config file.
fn run_query(explicit: Option<&Path>, query: &QueryCommand) -> anyhow::Result<()> {
    let opts = query.options();
    let hint = "query commands read `node.data_dir` and `api.listen` from the config: pass --config, or --api \
                (and --data-dir for a stopped daemon)";
    // The config, when there is one to read: `--config` always; else the usual places, unless both flags say all
    // that the config would. With `--api` and no config file anywhere, the defaults stand in for the rest.
    let config = match (explicit, &opts.data_dir, &opts.api) {
        (Some(path), _, _) => Some(Config::load(path).context(hint)?),
        (None, Some(_), Some(_)) => None,
        (None, _, api) => match config_path(None) {
            Ok(path) => Some(Config::load(&path).context(hint)?),
            Err(_) if api.is_some() => None,
            Err(e) => return Err(e.context(hint)),
        },
    };
    let api = match (&opts.api, &config) {
        (Some(api), _) => api.clone(),
        (None, Some(config)) => format!("http://{}", config.api.listen),
        // Without --api a config was loaded above (or the lookup's error returned); the default stands in anyway.
        (None, None) => format!("http://{}", Config::default_api_listen()),
    };
    let local = match (&opts.data_dir, &config) {
        (dir, Some(config)) => cli::LocalStore::from_config(
            dir.clone().unwrap_or_else(|| config.node.data_dir.clone()),
            config,
        ),
        (Some(dir), None) => cli::LocalStore::with_defaults(dir.clone()),
        (None, None) => cli::LocalStore::with_defaults(Config::default_data_dir()),
    };
    // The token the daemon requires, from the variable its config names (or the usual one).
    let token_env = config.as_ref().and_then(|c| c.api.token_env.clone());
    let api = cli::Endpoint::from_env(
        &api,
        token_env.as_deref().unwrap_or(cli::http::DEFAULT_TOKEN_ENV),
    )?;
    let output = Output {
        json: opts.json,
        verbose: opts.verbose,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(cli::run_query(query, &local, &api, output))
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // Every secret `run` needs (key password, each action's HMAC secret, the API token) must be there.
    let secrets = config.read_secrets()?;
    config.refuse_placeholders(&secrets)?;
    // The key is decrypted as `run` would: a wrong or empty password fails here with the same message, not later.
    let key = config
        .node
        .data_dir
        .join(koi_github_indexer::node::identity::KEY_FILE);
    if key.exists() {
        koi_github_indexer::protocol::NodeKey::load(&key, &secrets.key_password)?;
    }
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(warning) = koi_github_indexer::config::data_dir_exposure(&config.node.data_dir) {
        eprintln!("warning: {warning}");
    }
    match &config.api.token_env {
        Some(var) => println!("API token: required (from `{var}`, set by api.token_env)"),
        None => println!(
            "API token: none (any local process may read the API; set api.token_env on a host with other users or \
             behind a reverse proxy: README, Security)"
        ),
    }
    println!("{}: OK", path.display());
    Ok(())
}

/// Prints the error and its causes, each once: a cause whose text the message already holds (an OS error that a
/// wrapping error quotes) is not repeated.
fn fail(error: &anyhow::Error) -> ExitCode {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    // An error can quote the API's answer or a peer's text: shown, never obeyed, by the terminal.
    eprintln!("error: {}", cli::terminal::visible(&text));
    ExitCode::FAILURE
}
