//! Export and import: the index as NDJSON lines, and back ([`crate::index::export`] holds the line format).

use super::*;

impl Index {
    /// Starts an export: its header (counts as of now) and what it will include ([`export`]).
    pub fn export_start(
        &self,
        node_rid: Option<String>,
    ) -> Result<(export::Header, export::Point), IndexError> {
        if !self.keep_contents {
            return Err(IndexError::ContentsNotKept);
        }
        let counts = self.counts()?;
        let now = chrono::Utc::now();
        let point = export::Point {
            last_seq: self.last_seq()?,
            at: now.timestamp_micros(),
        };
        let header = export::Header {
            format: export::FORMAT.to_owned(),
            format_version: export::FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            node_rid,
            program: concat!("koi-github-indexer ", env!("CARGO_PKG_VERSION")).to_owned(),
            exported_at: micros_text(point.at),
            last_seq: point.last_seq,
            events: counts.events,
            repositories: counts.repositories,
        };
        Ok((header, point))
    }

    /// Up to about `max` lines of an export from `cursor` on, and the cursor after them.
    pub fn export_page(
        &self,
        cursor: export::Cursor,
        point: export::Point,
        max: usize,
    ) -> Result<(Vec<export::Line>, export::Cursor), IndexError> {
        use export::{Cursor, Line};
        let mut lines = Vec::new();
        let mut cursor = cursor;
        while lines.len() < max {
            cursor = match cursor {
                Cursor::Manual(after) => {
                    let mut next = Cursor::Events(0);
                    for entry in self.repos.range(after_key(&after)..) {
                        let (key, value) = entry?;
                        let record: RepoRecord = decode(trees::REPOS, &key, &value)?;
                        if record.manual {
                            lines.push(Line::Repository {
                                full_name: feeds::full_name(&record.repo_rid).to_owned(),
                            });
                            if lines.len() >= max {
                                next = Cursor::Manual(key.to_vec());
                                break;
                            }
                        }
                    }
                    next
                }
                Cursor::Events(after) => {
                    let mut next = Cursor::RepoBundles(Vec::new());
                    let Some(first) = after.checked_add(1).filter(|f| *f <= point.last_seq) else {
                        cursor = next;
                        continue;
                    };
                    for entry in self
                        .stream
                        .range(first.to_be_bytes()..=point.last_seq.to_be_bytes())
                    {
                        let (key, rid) = entry?;
                        let seq = decode_u64(trees::STREAM, &key, &key)?;
                        if let Some(bundle) = self.exported_event(&rid, point.at)? {
                            lines.push(Line::Bundle(Box::new(bundle)));
                        }
                        if lines.len() >= max {
                            next = Cursor::Events(seq);
                            break;
                        }
                    }
                    next
                }
                Cursor::RepoBundles(after) => {
                    let prefix = b"orn:github.repo:";
                    let start = if after.is_empty() {
                        prefix.to_vec()
                    } else {
                        after_key(&after)
                    };
                    let mut next = Cursor::Done;
                    for entry in self.bundles.range(start..) {
                        let (key, value) = entry?;
                        if !key.starts_with(prefix) {
                            break;
                        }
                        if let (manifest, Some(contents)) = held::decode(&key, &value)? {
                            lines.push(Line::Bundle(Box::new(export::ExportedBundle {
                                manifest,
                                contents,
                                received_at: None,
                                history: Vec::new(),
                            })));
                        }
                        if lines.len() >= max {
                            next = Cursor::RepoBundles(key.to_vec());
                            break;
                        }
                    }
                    next
                }
                Cursor::Done => return Ok((lines, Cursor::Done)),
            };
        }
        Ok((lines, cursor))
    }

    /// An event as it was at `at` (µs): the newest version received by then, and the older ones.
    pub(super) fn exported_event(
        &self,
        rid: &[u8],
        at: i64,
    ) -> Result<Option<export::ExportedBundle>, IndexError> {
        let Some(mut versions) = self.held_versions(rid)? else {
            return Ok(None); // forgotten since
        };
        // Versions received after the export started are not part of it.
        while versions.len() > 1 && versions[0].0.is_some_and(|r| r > at) {
            versions.remove(0);
        }
        let mut decoded = Vec::with_capacity(versions.len());
        for (received, value) in versions.into_iter().rev() {
            let (manifest, contents) = held::decode(rid, &value)?;
            let Some(contents) = contents else {
                return Ok(None); // contents not kept (pruned, or keep_contents off when written)
            };
            decoded.push(export::ExportedVersion {
                manifest,
                contents,
                received_at: received.map(micros_text),
            });
        }
        let Some(current) = decoded.pop() else {
            return Ok(None);
        };
        Ok(Some(export::ExportedBundle {
            manifest: current.manifest,
            contents: current.contents,
            received_at: current.received_at,
            history: decoded,
        }))
    }

    /// Loads export lines ([`export`]): a repository added by hand is added; a bundle's versions are applied
    /// oldest first with the source's received times, after their hashes are checked. Deduplicated as the network
    /// path; no action fires. One outcome per bundle applied (per version).
    pub fn import_lines(&self, lines: &[export::Line]) -> Result<Vec<ApplyOutcome>, IndexError> {
        let mut bundles = Vec::new();
        for line in lines {
            match line {
                export::Line::Repository { full_name } => {
                    self.add_repository(full_name)?;
                }
                export::Line::End { .. } => {}
                export::Line::Bundle(bundle) => {
                    for (version, received) in bundle.versions() {
                        version
                            .verify_hash()
                            .map_err(|e| IndexError::Import(e.to_string()))?;
                        bundles.push((version, received));
                    }
                }
            }
        }
        self.import_bundles(&bundles)
    }
}
