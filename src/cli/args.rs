//! The query commands and their flags, as clap reads them.

/// Where a query command finds the daemon or the store, and how it prints. Only query commands take these, so
/// `run --help` and `check-config --help` do not list them.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct QueryOptions {
    /// The data dir holding the store (default: `node.data_dir` of the config).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Base URL of the running daemon's API (default: `http://` + `api.listen` of the config).
    #[arg(long)]
    pub api: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Say on stderr whether the daemon's API or the store was used.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The options of `export` and `import`: they print no table, so `--help` lists no `--json` (still accepted, and
/// unused).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct SnapshotOptions {
    /// Not used: an export is NDJSON, an import prints one line.
    #[arg(long, hide = true)]
    pub json: bool,
    /// The data dir holding the store (default: `node.data_dir` of the config).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Base URL of the running daemon's API (default: `http://` + `api.listen` of the config).
    #[arg(long)]
    pub api: Option<String>,
    /// Say on stderr whether the daemon's API or the store was used.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The options of `tail`: it reads the running daemon's live stream, never a store, so `--help` lists no
/// `--data-dir` (still accepted, and unused, so that scripts written for the other commands keep working).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct StreamOptions {
    /// Not used: `tail` needs the running daemon.
    #[arg(long, hide = true)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Base URL of the running daemon's API (default: `http://` + `api.listen` of the config).
    #[arg(long)]
    pub api: Option<String>,
    /// Print each event as a line of JSON instead of a table row.
    #[arg(long)]
    pub json: bool,
    /// Say on stderr which stream is followed.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A query of the index.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum QueryCommand {
    /// List the indexed repositories, most recently updated first.
    ListRepos {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// Show a repository's events, newest first.
    ShowEvents {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name` or `orn:github.repo:owner/name`.
        repo: String,
        /// Events per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Events to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// Only events of this type (`push`, `issues`, `pull_request`, …).
        #[arg(long = "type")]
        event_type: Option<String>,
    },
    /// Show one event: its row and the bundle it came from.
    EventDetails {
        #[command(flatten)]
        opts: QueryOptions,
        /// The event RID, `orn:github.event:owner/name:id`.
        rid: String,
    },
    /// Show any bundle the node holds, event or repository: its manifest as received, how its hash was made, and
    /// its contents.
    Bundle {
        #[command(flatten)]
        opts: QueryOptions,
        /// The RID, e.g. `orn:github.event:owner/name:id` or `orn:github.repo:owner/name`.
        rid: String,
    },
    /// Track a repository (it is listed with no events until some arrive). Idempotent.
    AddRepo {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name`, `orn:github.repo:owner/name` or `https://github.com/owner/name`.
        repo: String,
    },
    /// Stop tracking a repository added by hand with `add-repo`, while no events of it have arrived.
    RemoveRepo {
        #[command(flatten)]
        opts: QueryOptions,
        /// `owner/name` or `orn:github.repo:owner/name`.
        repo: String,
    },
    /// Totals, the latest event, and events by type with percentages.
    Summary {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// Follow the live stream of newly indexed events (needs the running daemon); Ctrl-C stops.
    Tail {
        #[command(flatten)]
        opts: StreamOptions,
        /// Only this repository (`owner/name`); repeat for several.
        #[arg(long)]
        repo: Vec<String>,
        /// Only events of this type (`push`, `issues`, …); repeat for several.
        #[arg(long = "type")]
        event_type: Vec<String>,
        /// Only events by this GitHub login.
        #[arg(long)]
        actor: Option<String>,
        /// Start after this stream sequence number (replays what came since), instead of from now.
        #[arg(long)]
        after: Option<u64>,
    },
    /// An event's versions, newest first: each UPDATE keeps the one it replaced (`index.history` of them).
    History {
        #[command(flatten)]
        opts: QueryOptions,
        /// The event RID, `orn:github.event:owner/name:id`.
        rid: String,
    },
    /// The actions (`[[action]]`): where they POST, deliveries waiting, delivered and failed, the last error.
    Actions {
        #[command(flatten)]
        opts: QueryOptions,
    },
    /// An action's delivery log, newest first: each delivery's state, attempts and errors.
    Deliveries {
        #[command(flatten)]
        opts: QueryOptions,
        /// The action's name.
        name: String,
        /// Deliveries per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Deliveries to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// Send a delivery again (needs the running daemon): queued as a new delivery at the end of the action's queue.
    Redeliver {
        #[command(flatten)]
        opts: QueryOptions,
        /// The action's name.
        name: String,
        /// The delivery's id (from `deliveries`).
        id: String,
    },
    /// Write the whole index as NDJSON: through the running daemon's API without stopping it, or from the store
    /// when it is stopped. This is the backup.
    Export {
        #[command(flatten)]
        opts: SnapshotOptions,
        /// The file to write (replaced only once the export is complete), or `-` for stdout.
        #[arg(long)]
        out: String,
    },
    /// Load an export into the store (the daemon must be stopped). Events already held are deduplicated as when
    /// they come from the network; the data dir is created if needed.
    Import {
        #[command(flatten)]
        opts: SnapshotOptions,
        /// The export file, or `-` for stdin.
        #[arg(long = "in")]
        input: String,
    },
    /// Items the node received but could not use (dead letters), newest first: why, from whom, when.
    Rejected {
        #[command(flatten)]
        opts: QueryOptions,
        /// Letters per page (1–100).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        limit: u16,
        /// Letters to skip (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
}

impl QueryCommand {
    /// The command's options, with the ones it does not take at their defaults.
    pub fn options(&self) -> QueryOptions {
        match self {
            QueryCommand::ListRepos { opts }
            | QueryCommand::ShowEvents { opts, .. }
            | QueryCommand::EventDetails { opts, .. }
            | QueryCommand::Bundle { opts, .. }
            | QueryCommand::AddRepo { opts, .. }
            | QueryCommand::RemoveRepo { opts, .. }
            | QueryCommand::Summary { opts }
            | QueryCommand::History { opts, .. }
            | QueryCommand::Actions { opts }
            | QueryCommand::Deliveries { opts, .. }
            | QueryCommand::Redeliver { opts, .. }
            | QueryCommand::Rejected { opts, .. } => opts.clone(),
            QueryCommand::Tail { opts, .. } => QueryOptions {
                data_dir: None,
                api: opts.api.clone(),
                json: opts.json,
                verbose: opts.verbose,
            },
            QueryCommand::Export { opts, .. } | QueryCommand::Import { opts, .. } => QueryOptions {
                data_dir: opts.data_dir.clone(),
                api: opts.api.clone(),
                json: false,
                verbose: opts.verbose,
            },
        }
    }
}
