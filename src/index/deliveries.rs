//! The outbound webhook queue: which actions a new event goes to, and each delivery's state and log.
//!
//! A delivery is queued **in the transaction that indexes the event** ([`super::Index::apply_bundles`]), so an
//! event is never indexed without its deliveries, nor a delivery queued for an event that was not indexed; a
//! kill -9 loses neither. [`crate::actions`] sends them, one action at a time in queue order, and records each
//! attempt here.
//!
//! One tree, `actions` (`␀` is a 0 byte, `n` a u64 BE: the delivery's number in its action's queue, never reused):
//!
//! | key | value |
//! |---|---|
//! | `d ␀ action ␀ n` | [`Delivery`] JSON: the log of one delivery (bounded per action: oldest finished dropped) |
//! | `p ␀ action ␀ n` | empty: the delivery waits to be sent (the queue, in order) |
//! | `c ␀ action ␀ next` / `queued` / `delivered` / `failed` / `kept:delivered` / `kept:failed` | u64 BE counters |
//! | `e ␀ action` | the last error, text |

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Tree;

use super::error::IndexError;
use super::github::EventRow;

/// Tree name.
pub const TREE: &str = "actions";
/// Attempts kept in a delivery's log (the count goes on).
const ATTEMPTS_LOGGED: usize = 10;

type TxResult<T> = Result<T, ConflictableTransactionError<IndexError>>;

/// Which new events an action is for: each list empty means "any"; a repository is `owner/name` or `owner/*`
/// (case does not matter, as on GitHub), an actor a GitHub login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// The action's name (unique, letters, digits, `-` and `_`).
    pub name: String,
    /// Repositories (`owner/name` or `owner/*`).
    pub repos: super::RepoFilter,
    /// Event types (`push`, `issues`, …).
    pub event_types: Vec<String>,
    /// GitHub logins.
    pub actors: Vec<String>,
}

impl ActionFilter {
    /// Whether `row` is for this action.
    pub fn matches(&self, row: &EventRow) -> bool {
        let repo_ok = self.repos.matches_rid(&row.repo_rid);
        let type_ok = self.event_types.is_empty() || self.event_types.contains(&row.event_type);
        let actor_ok = self.actors.is_empty()
            || row
                .actor
                .as_ref()
                .is_some_and(|actor| self.actors.iter().any(|a| a.eq_ignore_ascii_case(actor)));
        repo_ok && type_ok && actor_ok
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent, or to be retried.
    Queued,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up: a 4xx other than 408/429, `max_age` passed, or the event is gone.
    Failed,
}

/// One attempt to send a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started (RFC 3339 UTC, ms).
    pub at: String,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong (`null` when delivered).
    pub error: Option<String>,
}

/// One delivery: which event, to which action, and what happened so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Unique id, sent as `X-Koi-Delivery` and in the body.
    pub id: String,
    /// Position in the action's queue.
    pub number: u64,
    /// The event delivered.
    pub event_rid: String,
    /// `queued`, `delivered` or `failed`.
    pub state: DeliveryState,
    /// When it was queued (RFC 3339 UTC, ms).
    pub created_at: String,
    /// When it was delivered or given up.
    pub finished_at: Option<String>,
    /// When the next attempt is due, while queued after a failed attempt.
    pub next_attempt_at: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The id of the delivery this one sends again (`POST …/redeliver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivery_of: Option<String>,
    /// The last attempts, oldest first (at most 10).
    pub log: Vec<Attempt>,
}

/// An action's totals, for `GET /actions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCounts {
    /// Deliveries waiting.
    pub queued: u64,
    /// Deliveries delivered, ever.
    pub delivered: u64,
    /// Deliveries given up, ever.
    pub failed: u64,
    /// The last error of any attempt, if any.
    pub last_error: Option<String>,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Delivered,
    /// Not delivered; try again at this time.
    RetryAt(DateTime<Utc>),
    /// Not delivered, and never will be.
    GiveUp,
}

/// RFC 3339 UTC with milliseconds.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses [`time_text`].
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn key(kind: u8, action: &str, n: Option<u64>) -> Vec<u8> {
    let mut key = Vec::with_capacity(action.len() + 11);
    key.push(kind);
    key.push(0);
    key.extend_from_slice(action.as_bytes());
    if let Some(n) = n {
        key.push(0);
        key.extend_from_slice(&n.to_be_bytes());
    }
    key
}

fn counter_key(action: &str, name: &str) -> Vec<u8> {
    let mut key = key(b'c', action, None);
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn corrupt(key: &[u8], problem: String) -> IndexError {
    IndexError::Corrupt {
        tree: TREE,
        key: key.escape_ascii().to_string(),
        problem,
    }
}

fn decode_delivery(key: &[u8], bytes: &[u8]) -> Result<Delivery, IndexError> {
    serde_json::from_slice(bytes)
        .map_err(|e| corrupt(key, format!("cannot decode the delivery: {e}")))
}

fn decode_counter(key: &[u8], bytes: &[u8]) -> Result<u64, IndexError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            corrupt(
                key,
                format!("expected an 8-byte counter, found {} bytes", bytes.len()),
            )
        })
}

fn tx_counter(tree: &TransactionalTree, key: &[u8]) -> TxResult<u64> {
    match tree.get(key)? {
        Some(bytes) => decode_counter(key, &bytes).map_err(ConflictableTransactionError::Abort),
        None => Ok(0),
    }
}

fn tx_add(tree: &TransactionalTree, key: &[u8], delta: i64) -> TxResult<u64> {
    let n = tx_counter(tree, key)?.saturating_add_signed(delta);
    tree.insert(key, &n.to_be_bytes())?;
    Ok(n)
}

/// A new delivery id: 128 random bits, formatted as a UUID (version 4), as GitHub's `X-GitHub-Delivery`.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Queues a delivery of `event_rid` to `action`, inside the caller's transaction.
pub(super) fn enqueue(
    tree: &TransactionalTree,
    action: &str,
    event_rid: &str,
    now: &str,
    redelivery_of: Option<&str>,
) -> TxResult<Delivery> {
    let number = tx_add(tree, &counter_key(action, "next"), 1)?;
    tx_add(tree, &counter_key(action, "queued"), 1)?;
    let delivery = Delivery {
        id: new_id(),
        number,
        event_rid: event_rid.to_owned(),
        state: DeliveryState::Queued,
        created_at: now.to_owned(),
        finished_at: None,
        next_attempt_at: None,
        attempts: 0,
        last_error: None,
        redelivery_of: redelivery_of.map(str::to_owned),
        log: Vec::new(),
    };
    let bytes =
        serde_json::to_vec(&delivery).map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
    tree.insert(key(b'd', action, Some(number)), bytes)?;
    tree.insert(key(b'p', action, Some(number)), &[])?;
    Ok(delivery)
}

/// The delivery queue and log, outside the indexing transaction: what the sender and the API use.
#[derive(Clone)]
pub struct Deliveries {
    tree: Tree,
}

impl Deliveries {
    /// Opens the tree in the shared database.
    pub fn open(db: &sled::Db) -> Result<Deliveries, IndexError> {
        Ok(Deliveries {
            tree: db.open_tree(TREE)?,
        })
    }

    /// The tree, for the indexing transaction.
    pub(super) fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The first delivery waiting in `action`'s queue.
    pub fn next_pending(&self, action: &str) -> Result<Option<Delivery>, IndexError> {
        let prefix = [key(b'p', action, None), vec![0]].concat();
        let Some(entry) = self.tree.scan_prefix(&prefix).keys().next() else {
            return Ok(None);
        };
        let pending = entry?;
        let number = decode_counter(&pending, &pending[prefix.len()..])?;
        let record_key = key(b'd', action, Some(number));
        match self.tree.get(&record_key)? {
            Some(bytes) => decode_delivery(&record_key, &bytes).map(Some),
            None => Err(corrupt(&pending, "a queued delivery has no record".into())),
        }
    }

    /// Records an attempt on delivery `number` of `action` and what it came to; trims the log to `keep_delivered`
    /// delivered and `keep_failed` failed deliveries when it finished. Returns the delivery as now stored.
    pub fn record_attempt(
        &self,
        action: &str,
        number: u64,
        attempt: Attempt,
        outcome: &AttemptOutcome,
        (keep_delivered, keep_failed): (u64, u64),
    ) -> Result<Delivery, IndexError> {
        let record_key = key(b'd', action, Some(number));
        let pending_key = key(b'p', action, Some(number));
        let error_key = key(b'e', action, None);
        let delivery = self.tree.transaction(|tx| {
            let Some(bytes) = tx.get(&record_key)? else {
                return Err(ConflictableTransactionError::Abort(corrupt(
                    &record_key,
                    "the delivery being sent has no record".into(),
                )));
            };
            let mut delivery = decode_delivery(&record_key, &bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            delivery.attempts += 1;
            delivery.last_error.clone_from(&attempt.error);
            if let Some(error) = &attempt.error {
                tx.insert(error_key.as_slice(), error.as_bytes())?;
            }
            let finished_at = attempt.at.clone();
            delivery.log.push(attempt.clone());
            if delivery.log.len() > ATTEMPTS_LOGGED {
                delivery.log.remove(0);
            }
            match outcome {
                AttemptOutcome::RetryAt(at) => delivery.next_attempt_at = Some(time_text(*at)),
                AttemptOutcome::Delivered | AttemptOutcome::GiveUp => {
                    let (state, name) = match outcome {
                        AttemptOutcome::Delivered => (DeliveryState::Delivered, "delivered"),
                        _ => (DeliveryState::Failed, "failed"),
                    };
                    delivery.state = state;
                    delivery.finished_at = Some(finished_at);
                    delivery.next_attempt_at = None;
                    if tx.remove(pending_key.as_slice())?.is_some() {
                        tx_add(tx, &counter_key(action, "queued"), -1)?;
                    }
                    tx_add(tx, &counter_key(action, name), 1)?;
                    tx_add(tx, &counter_key(action, &format!("kept:{name}")), 1)?;
                }
            }
            let bytes = serde_json::to_vec(&delivery)
                .map_err(|e| ConflictableTransactionError::Abort(e.into()))?;
            tx.insert(record_key.as_slice(), bytes)?;
            Ok(delivery)
        })?;
        match delivery.state {
            DeliveryState::Delivered => {
                self.trim(action, DeliveryState::Delivered, keep_delivered)?
            }
            DeliveryState::Failed => self.trim(action, DeliveryState::Failed, keep_failed)?,
            DeliveryState::Queued => {}
        }
        Ok(delivery)
    }

    /// Drops the oldest finished deliveries in `state` beyond `keep`.
    fn trim(&self, action: &str, state: DeliveryState, keep: u64) -> Result<(), IndexError> {
        let name = match state {
            DeliveryState::Delivered => "kept:delivered",
            DeliveryState::Failed => "kept:failed",
            DeliveryState::Queued => return Ok(()),
        };
        let kept_key = counter_key(action, name);
        let kept = match self.tree.get(&kept_key)? {
            Some(bytes) => decode_counter(&kept_key, &bytes)?,
            None => 0,
        };
        let Some(excess) = kept.checked_sub(keep).filter(|n| *n > 0) else {
            return Ok(());
        };
        let prefix = [key(b'd', action, None), vec![0]].concat();
        let mut doomed = Vec::new();
        for entry in self.tree.scan_prefix(&prefix) {
            let (k, bytes) = entry?;
            if decode_delivery(&k, &bytes)?.state == state {
                doomed.push(k);
                if doomed.len() as u64 >= excess {
                    break;
                }
            }
        }
        let removed = doomed.len() as i64;
        self.tree.transaction(|tx| {
            for k in &doomed {
                tx.remove(k)?;
            }
            tx_add(tx, &kept_key, -removed)?;
            Ok(())
        })?;
        Ok(())
    }

    /// The names of the actions that ever had a delivery queued, sorted.
    pub fn action_names(&self) -> Result<Vec<String>, IndexError> {
        let mut names = Vec::new();
        for k in self.tree.scan_prefix(b"c\0").keys() {
            let k = k?;
            if let Some(name) = k[2..].strip_suffix(b"\0next") {
                names.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        Ok(names)
    }

    /// An action's totals.
    pub fn counts(&self, action: &str) -> Result<ActionCounts, IndexError> {
        let counter = |name: &str| -> Result<u64, IndexError> {
            let k = counter_key(action, name);
            match self.tree.get(&k)? {
                Some(bytes) => decode_counter(&k, &bytes),
                None => Ok(0),
            }
        };
        Ok(ActionCounts {
            queued: counter("queued")?,
            delivered: counter("delivered")?,
            failed: counter("failed")?,
            last_error: self
                .tree
                .get(key(b'e', action, None))?
                .map(|e| String::from_utf8_lossy(&e).into_owned()),
        })
    }

    /// A page of `action`'s deliveries, newest first.
    pub fn page(
        &self,
        action: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>, IndexError> {
        let prefix = [key(b'd', action, None), vec![0]].concat();
        self.tree
            .scan_prefix(&prefix)
            .rev()
            .skip(offset)
            .take(limit)
            .map(|entry| {
                let (k, bytes) = entry?;
                decode_delivery(&k, &bytes)
            })
            .collect()
    }

    /// Queues delivery `id` of `action` again, as a new delivery at the end of the queue (its `redelivery_of`
    /// names the original). `None` when the log holds no such delivery.
    pub fn redeliver(&self, action: &str, id: &str) -> Result<Option<Delivery>, IndexError> {
        let prefix = [key(b'd', action, None), vec![0]].concat();
        let mut original = None;
        for entry in self.tree.scan_prefix(&prefix).rev() {
            let (k, bytes) = entry?;
            let delivery = decode_delivery(&k, &bytes)?;
            if delivery.id == id {
                original = Some(delivery);
                break;
            }
        }
        let Some(original) = original else {
            return Ok(None);
        };
        let now = time_text(Utc::now());
        let delivery = self
            .tree
            .transaction(|tx| enqueue(tx, action, &original.event_rid, &now, Some(&original.id)))?;
        Ok(Some(delivery))
    }
}
