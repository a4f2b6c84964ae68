//! What the rest of the program is built from: the settings of the store, the index and the node, derived from the
//! configuration once, so that the daemon and the CLI open and run things the same way.

use std::path::PathBuf;

use super::{ActionConfig, Config};
use crate::index::IndexOptions;
use crate::node::NodeSettings;
use crate::storage::StoreOptions;

impl Config {
    /// `node.data_dir` when the config does not set it.
    pub fn default_data_dir() -> PathBuf {
        super::NodeConfig::default().data_dir
    }

    /// `api.listen` when the config does not set it.
    pub fn default_api_listen() -> std::net::SocketAddr {
        super::ApiConfig::default().listen
    }

    /// How to open the sled store (`[storage]`): the daemon and the CLI open it the same way.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            cache_bytes: self.storage.cache,
            compression: self.storage.compression,
        }
    }

    /// How the index keeps what it is given (`[index]`, and the `[[action]]` filters new events are queued for).
    pub fn index_options(&self) -> IndexOptions {
        IndexOptions {
            keep_contents: self.index.keep_contents,
            history: self.index.history,
            actions: self.actions.iter().map(ActionConfig::filter).collect(),
            repos: crate::index::RepoFilter(self.index.repos.clone()),
            sink_log: self.sink.nats.is_some(),
        }
    }

    /// How the node joins, polls and buffers (`[first_contact]`, `[poll]`, `[pipeline]`, `index.rid_types`).
    pub fn node_settings(&self) -> NodeSettings {
        NodeSettings {
            first_contact_url: self.first_contact.url.clone(),
            first_contact_rid: self.first_contact.rid.clone(),
            interest: self.index.rid_types.clone(),
            poll_limit: self.poll.limit,
            timeout: self.poll.timeout,
            interval: self.poll.interval,
            max_backoff: self.poll.max_backoff,
            fetch_batch: self.poll.fetch_batch,
            catch_up_timeout: self.poll.catch_up_timeout,
            max_response: usize::try_from(self.poll.max_response).unwrap_or(usize::MAX),
            max_buffered: self.pipeline.max_buffered,
        }
    }
}
