//! Start-up: the data directory, the key, the store and the index opened (off the runtime: the key's PBKDF2 and a
//! schema upgrade are slow), then the node and the API built over them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::DB_DIR;
use crate::api::{ApiContext, NodeStatus};
use crate::config::Config;
use crate::index::{DeadLetters, Index};
use crate::node::identity::Identity;
use crate::node::inbox::Inbox;
use crate::node::{Node, NodeTelemetry};
use crate::storage::{self, Store};
use crate::telemetry::{self, Metrics, NodeStarted, PollLog};

/// Everything opened at start-up, before anything runs.
pub(super) struct Opened {
    /// `node.data_dir`, created if needed.
    pub(super) data_dir: PathBuf,
    /// Our key and RID.
    pub(super) identity: Identity,
    /// The sled store; holds its lock for the life of the daemon.
    pub(super) store: Store,
    /// The index over it.
    pub(super) index: Index,
    /// Items received but not usable, bounded.
    pub(super) dead_letters: DeadLetters,
    /// The recent poll attempts, for `/polls`.
    pub(super) poll_log: PollLog,
    /// Every metric, shared by everything that reports.
    pub(super) metrics: Metrics,
}

/// Opens what the daemon runs on. A key file that does not decrypt, a store held by another process or one
/// written by a newer version stop start-up here, with an error that says so.
pub(super) async fn open(config: &Config, key_password: String) -> anyhow::Result<Opened> {
    let data_dir = config.prepare_data_dir()?;
    if let Some(warning) = crate::config::data_dir_exposure(&data_dir) {
        tracing::warn!("{warning}");
    }
    let (identity, store, index) = {
        let data_dir = data_dir.clone();
        let name = config.node.name.clone();
        let store_options = config.store_options();
        let options = config.index_options();
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let identity = Identity::load_or_create(&data_dir, &name, &key_password)?;
            let db_path = data_dir.join(DB_DIR);
            let store = storage::open(&db_path, store_options)?;
            let index = Index::open_with(&store.db, options)
                .with_context(|| format!("cannot open the index in {}", db_path.display()))?;
            Ok((identity, store, index))
        })
        .await
        .context("start-up task failed")??
    };
    if identity.created {
        tracing::info!(key = %identity.key_path.display(), "created a new node key (new identity)");
    }
    let db_path = data_dir.join(DB_DIR);
    let dead_letters = DeadLetters::open(&store.db, config.pipeline.dead_letters)
        .with_context(|| format!("cannot open the dead letters in {}", db_path.display()))?;
    let poll_log = PollLog::open(&store.db)
        .with_context(|| format!("cannot open the poll log in {}", db_path.display()))?;
    Ok(Opened {
        data_dir,
        identity,
        store,
        index,
        dead_letters,
        poll_log,
        metrics: Metrics::new(),
    })
}

impl Opened {
    /// The node over the store, with its inbox.
    pub(super) fn node(&self, config: &Config) -> anyhow::Result<Arc<Node>> {
        let inbox_dir = self.store.inbox_dir();
        let inbox = Inbox::open(&inbox_dir, &self.store.db)
            .with_context(|| format!("cannot open the inbox in {}", inbox_dir.display()))?;
        Ok(Node::new(
            config.node_settings(),
            self.identity.clone(),
            self.store.db.clone(),
            inbox,
            self.index.clone(),
            self.dead_letters.clone(),
            NodeTelemetry {
                metrics: self.metrics.clone(),
                poll_log: self.poll_log.clone(),
            },
        )?)
    }

    /// Binds `api.listen` and serves the API until `shutdown`; logs the start-up line and tells systemd the
    /// daemon is ready (once the API answers).
    pub(super) async fn start_api(
        &self,
        config: &Config,
        node: &Arc<Node>,
        token: Option<String>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (`api.listen`): is the port in use?",
                    config.api.listen
                )
            })?;
        let api_addr = listener
            .local_addr()
            .context("reading the API's listening address")?;
        let ctx = self.api_context(config, node, token, shutdown);
        let task = tokio::spawn(crate::api::server::serve(
            listener,
            ctx,
            (&config.api).into(),
            shutdown.clone(),
        ));
        NodeStarted {
            node_rid: self.identity.rid.as_str(),
            data_dir: &self.data_dir.display().to_string(),
            api_addr: &api_addr.to_string(),
            neighbours: &node
                .neighbour_status()
                .into_iter()
                .map(|n| n.rid)
                .collect::<Vec<_>>(),
        }
        .emit(&self.metrics);
        // systemd (Type=notify): ready once the API answers. A no-op outside systemd.
        telemetry::notify_ready();
        Ok(task)
    }

    /// What the API's handlers read.
    fn api_context(
        &self,
        config: &Config,
        node: &Arc<Node>,
        token: Option<String>,
        shutdown: &CancellationToken,
    ) -> ApiContext {
        let status = {
            let node = Arc::clone(node);
            let letters = self.dead_letters.clone();
            let name = config.node.name.clone();
            let data_dir = self.data_dir.display().to_string();
            Arc::new(move || NodeStatus {
                node_name: name.clone(),
                node_rid: node.rid().to_string(),
                node_type: "PARTIAL".into(),
                data_dir: data_dir.clone(),
                inbox: node.inbox_depth() as u64,
                rejected: letters.len(),
                neighbours: node.neighbour_status(),
            })
        };
        ApiContext {
            index: self.index.clone(),
            status,
            metrics: self.metrics.clone(),
            poll_log: self.poll_log.clone(),
            dead_letters: self.dead_letters.clone(),
            shutdown: shutdown.clone(),
            stream_keep_alive: (config.api.idle_timeout / 2)
                .min(std::time::Duration::from_secs(15)),
            actions: Arc::new(
                config
                    .actions
                    .iter()
                    .map(|a| crate::api::ActionInfo {
                        name: a.name.clone(),
                        url: crate::actions::shown_url(&a.url),
                    })
                    .collect(),
            ),
            node_rid: self.identity.rid.to_string(),
            access: crate::api::Access {
                allowed_hosts: config.api.allowed_hosts.clone(),
                token,
            },
        }
    }
}
