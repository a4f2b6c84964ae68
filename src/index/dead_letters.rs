//! Dead letters: every item the node received but could not use, with why, from whom and when, and the item
//! itself as received, so an operator can see what a neighbour sends wrong (`GET /api/processor/github/rejected`,
//! `koi-github-indexer rejected`).
//!
//! Bounded: at most `pipeline.dead_letters` are kept; writing one more drops the oldest (counted, so the loss is
//! visible). Keys are sled-generated ids, big-endian, so iteration order is arrival order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::IndexError;

/// Tree name.
const TREE: &str = "index.dead_letters";
/// Largest item text kept per letter; the rest is cut (and the letter says so).
pub const MAX_ITEM_BYTES: usize = 256 * 1024;

/// One rejected item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Its place in the tree (increasing with time).
    pub id: u64,
    /// The RID it claims, with control characters escaped; empty when it names none.
    pub rid: String,
    /// The neighbour it came from (its node RID).
    pub source: String,
    /// Why: `bad_rid`, `malformed`, `bad_hash`, `unfetchable`, `unindexable`, …
    pub reason: String,
    /// The specifics, e.g. the parser's words or the two hashes.
    pub detail: String,
    /// When it was rejected (RFC 3339 UTC).
    pub received_at: String,
    /// The item as received (JSON text), cut at [`MAX_ITEM_BYTES`].
    #[serde(default)]
    pub item: String,
    /// Whether `item` was cut.
    #[serde(default)]
    pub item_truncated: bool,
}

/// What to write: a [`DeadLetter`] without its id and time.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The RID it claims (raw; escaped when stored).
    pub rid: String,
    /// The neighbour it came from.
    pub source: String,
    /// Why (a reason label).
    pub reason: &'static str,
    /// The specifics.
    pub detail: String,
    /// The item as received.
    pub item: String,
}

/// The bounded dead-letter tree. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    db: sled::Db,
    tree: sled::Tree,
    max: u64,
    /// Letters held: counted once at open (the tree is bounded, so that scan is small), then kept up to date.
    held: Arc<AtomicU64>,
}

/// What a write did to the tree's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Letters held after the write.
    pub held: u64,
    /// Oldest letters dropped to stay within the bound.
    pub dropped: u64,
}

/// `text` with control characters escaped, so it is safe in a terminal table and a log line.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

impl DeadLetters {
    /// Opens the tree in the shared database, keeping at most `max` letters (at least 1).
    pub fn open(db: &sled::Db, max: u64) -> Result<DeadLetters, IndexError> {
        let tree = db.open_tree(TREE)?;
        let held = tree.len() as u64;
        let letters = DeadLetters {
            db: db.clone(),
            tree,
            max: max.max(1),
            held: Arc::new(AtomicU64::new(held)),
        };
        // A smaller bound than the last run's: trim now.
        letters.trim()?;
        Ok(letters)
    }

    /// Writes rejections (not flushed: the caller flushes with its other writes).
    pub fn record(&self, rejections: &[Rejection]) -> Result<Written, IndexError> {
        if rejections.is_empty() {
            return Ok(Written {
                held: self.len(),
                dropped: 0,
            });
        }
        let now = crate::protocol::Timestamp::now()
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut batch = sled::Batch::default();
        for r in rejections {
            let id = self.db.generate_id()?;
            let item_truncated = r.item.len() > MAX_ITEM_BYTES;
            let mut item = r.item.clone();
            if item_truncated {
                let mut cut = MAX_ITEM_BYTES;
                while !item.is_char_boundary(cut) {
                    cut -= 1;
                }
                item.truncate(cut);
            }
            let letter = DeadLetter {
                id,
                rid: escape_controls(&r.rid),
                source: r.source.clone(),
                reason: r.reason.to_owned(),
                detail: escape_controls(&r.detail),
                received_at: now.clone(),
                item,
                item_truncated,
            };
            batch.insert(&id.to_be_bytes(), serde_json::to_vec(&letter)?);
        }
        self.tree.apply_batch(batch)?;
        self.held
            .fetch_add(rejections.len() as u64, Ordering::AcqRel);
        let dropped = self.trim()?;
        Ok(Written {
            held: self.len(),
            dropped,
        })
    }

    /// Drops the oldest letters beyond the bound; returns how many.
    fn trim(&self) -> Result<u64, IndexError> {
        let mut dropped = 0;
        while self.held.load(Ordering::Acquire) > self.max {
            if self.tree.pop_min()?.is_none() {
                self.held.store(0, Ordering::Release);
                break;
            }
            self.held.fetch_sub(1, Ordering::AcqRel);
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Letters held.
    pub fn len(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A page, newest first. `with_items`: include each item's text (large), or leave it empty.
    pub fn page(
        &self,
        offset: usize,
        limit: usize,
        with_items: bool,
    ) -> Result<Vec<DeadLetter>, IndexError> {
        self.tree
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                let mut letter: DeadLetter =
                    serde_json::from_slice(&value).map_err(|e| IndexError::Corrupt {
                        tree: TREE,
                        key: key.escape_ascii().to_string(),
                        problem: format!("cannot decode the dead letter: {e}"),
                    })?;
                if !with_items {
                    letter.item.clear();
                }
                Ok(letter)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(n: usize) -> Rejection {
        Rejection {
            rid: format!("orn:github.event:a/b:{n}\u{0}\u{1b}"),
            source: "orn:koi-net.node:s+00".into(),
            reason: "bad_rid",
            detail: "it contains '\\0'".into(),
            item: "x".repeat(if n == 0 { MAX_ITEM_BYTES + 10 } else { 10 }),
        }
    }

    #[test]
    fn bounded_newest_first_escaped_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let letters = DeadLetters::open(&db, 3).unwrap();
        let written = letters
            .record(&(0..5).map(rejection).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(
            written,
            Written {
                held: 3,
                dropped: 2
            }
        );
        let page = letters.page(0, 10, true).unwrap();
        let rids: Vec<_> = page.iter().map(|l| l.rid.as_str()).collect();
        assert_eq!(
            rids,
            [
                "orn:github.event:a/b:4\\u{0}\\u{1b}",
                "orn:github.event:a/b:3\\u{0}\\u{1b}",
                "orn:github.event:a/b:2\\u{0}\\u{1b}"
            ]
        );
        assert_eq!(letters.page(1, 1, false).unwrap()[0].item, "");
        drop(letters);
        // Reopened with a smaller bound: trimmed at once.
        let letters = DeadLetters::open(&db, 1).unwrap();
        assert_eq!(letters.len(), 1);
        let cut = DeadLetters::open(&db, 10).unwrap();
        cut.record(&[rejection(0)]).unwrap();
        let newest = &cut.page(0, 1, true).unwrap()[0];
        assert!(newest.item_truncated && newest.item.len() == MAX_ITEM_BYTES);
    }
}
