//! Index errors: what failed, on which input or key, and what to do about it.

/// Everything the index can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled failed (I/O, or the store is locked by another process).
    #[error("index storage: {0}")]
    Storage(#[from] sled::Error),
    /// The store was written by a newer version of this program.
    #[error(
        "the index in this store has schema version {found}, but this koi-github-indexer reads only up to \
         version {supported}: run the newer version that wrote it, or restore a backup of the data dir made with \
         this one"
    )]
    NewerSchema {
        /// Version found in the store.
        found: u32,
        /// Highest version this build understands.
        supported: u32,
    },
    /// A stored entry cannot be decoded, or an index entry points at nothing.
    #[error(
        "index tree `{tree}`, key `{key}`: {problem}. The store is damaged: restore a backup of the data dir, or \
         delete its `db` directory to re-index from the network"
    )]
    Corrupt {
        /// Tree name.
        tree: &'static str,
        /// The key, printable.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// Text given as a repository is neither `owner/name` nor a repository RID.
    #[error(
        "`{input}` is not a repository: {problem}. Expected `owner/name`, `orn:github.repo:owner/name` or \
         `https://github.com/owner/name`"
    )]
    InvalidRepository {
        /// What was given.
        input: String,
        /// Why it was refused.
        problem: String,
    },
    /// An export was asked of a store that keeps no contents.
    #[error(
        "this store keeps no contents (`index.keep_contents = false`), and an export needs them to rebuild the \
         rows: back it up by copying the data dir while the daemon is stopped"
    )]
    ContentsNotKept,
    /// A line of an import cannot be loaded.
    #[error("{0}")]
    Import(String),
    /// Encoding a row failed (not expected: rows are plain data).
    #[error("encoding an index entry: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<sled::transaction::TransactionError<IndexError>> for IndexError {
    fn from(e: sled::transaction::TransactionError<IndexError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => IndexError::Storage(e),
        }
    }
}
