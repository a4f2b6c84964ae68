//! Snapshots of the index as NDJSON: `export` writes one, `import` loads one into a store.
//!
//! ```text
//! {"format":"koi-github-indexer/export","format_version":1,"schema_version":4,…}    the header
//! {"kind":"repository","full_name":"owner/name"}                                    a repository added by hand
//! {"kind":"bundle","manifest":{…},"contents":{…},"received_at":"…","history":[…]}  an event (older versions in
//! {"kind":"bundle","manifest":{…},"contents":{…}}                                   `history`, oldest first), or
//!                                                                                   a repository bundle
//! {"kind":"end","lines":N}                                                          the last line: N lines came
//!                                                                                   before it (a file without it
//!                                                                                   was cut short)
//! ```
//!
//! **Consistency while the daemon runs.** sled has no snapshots, so an export is made consistent by what it
//! picks: the events numbered up to the last stream number at its start, each in the version it had then (an
//! UPDATE that lands during the export is left out: the version it replaced comes from the history). Events
//! forgotten during the export are left out too. Repository bundles are read as they are when reached.
//!
//! Events whose contents are not kept (`index.keep_contents = false`) cannot be exported: their rows are made from
//! contents, so an import could not rebuild them. Tombstones of pruned events are not exported either.

use serde::{Deserialize, Serialize};

use crate::protocol::{Bundle, Contents, Manifest};

/// `format` of the header.
pub const FORMAT: &str = "koi-github-indexer/export";
/// `format_version` of the header this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The store's schema version ([`super::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The node that exported it, when known (a running daemon's RID).
    pub node_rid: Option<String>,
    /// The program and version that wrote it.
    pub program: String,
    /// When the export started (RFC 3339 UTC).
    pub exported_at: String,
    /// Events up to this stream number are exported.
    pub last_seq: u64,
    /// Event rows in the store when the export started.
    pub events: u64,
    /// Repository rows in the store when the export started.
    pub repositories: u64,
}

/// One line after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    /// A repository added by hand (`add-repo`).
    Repository {
        /// `owner/name`.
        full_name: String,
    },
    /// A stored bundle: an event with its older versions, or a repository bundle.
    Bundle(Box<ExportedBundle>),
    /// The last line: how many lines came between the header and it. A file without it was cut short.
    End {
        /// Lines after the header and before this one.
        lines: u64,
    },
}

/// One bundle and, for an event, the versions it replaced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedBundle {
    /// The current version's manifest.
    pub manifest: Manifest,
    /// Its contents.
    pub contents: Contents,
    /// When the source received it (RFC 3339 UTC, µs), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// Older versions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ExportedVersion>,
}

/// An older version of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedVersion {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its contents.
    pub contents: Contents,
    /// When the source received it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
}

impl ExportedBundle {
    /// The versions to apply, oldest first, each with its received time (µs).
    pub fn versions(&self) -> Vec<(Bundle, Option<i64>)> {
        let micros = |text: &Option<String>| {
            text.as_deref()
                .and_then(super::deliveries::parse_time)
                .map(|t| t.timestamp_micros())
        };
        self.history
            .iter()
            .map(|v| {
                (
                    Bundle {
                        manifest: v.manifest.clone(),
                        contents: v.contents.clone(),
                    },
                    micros(&v.received_at),
                )
            })
            .chain(std::iter::once((
                Bundle {
                    manifest: self.manifest.clone(),
                    contents: self.contents.clone(),
                },
                micros(&self.received_at),
            )))
            .collect()
    }
}

/// Where an export stands between two pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    /// Repositories added by hand, after this repository RID (empty: from the start).
    Manual(Vec<u8>),
    /// Events, after this stream number.
    Events(u64),
    /// Repository bundles, after this RID (empty: from the start).
    RepoBundles(Vec<u8>),
    /// Nothing left.
    Done,
}

/// What an export includes: events up to `last_seq`, each as it was at `at` (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The last stream number at the start.
    pub last_seq: u64,
    /// The start, µs since the epoch.
    pub at: i64,
}

/// Why a line of an export cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not a line of this format.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A version's contents do not hash to its manifest.
    #[error("{0}; the file is damaged")]
    Hash(String),
    /// A repository name GitHub does not allow.
    #[error("{0}; the file is damaged")]
    Repository(String),
}

/// One line after the header, checked for everything the import refuses, so that a file is refused whole before
/// anything of it is written: the JSON, each version's hash, and a repository name.
pub fn parse_line(text: &str) -> Result<Line, LineError> {
    let line: Line = serde_json::from_str(text)?;
    match &line {
        Line::Bundle(bundle) => {
            for (version, _) in bundle.versions() {
                version
                    .verify_hash()
                    .map_err(|e| LineError::Hash(e.to_string()))?;
            }
        }
        Line::Repository { full_name } => {
            super::store::check_repository_name(full_name)
                .map_err(|e| LineError::Repository(e.to_string()))?;
        }
        Line::End { .. } => {}
    }
    Ok(line)
}
