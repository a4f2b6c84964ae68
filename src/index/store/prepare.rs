//! Bundles made into what the index writes, once, off the writer. Three names, three things: an [`Ingest`] is
//! what `Index::apply` is handed (a bundle as received, or one already prepared); a [`PreparedBundle`] is a bundle
//! made into its row, repository details and held value; a [`Planned`] is what one item of a commit will write
//! (nothing, or a prepared bundle, borrowed or made here).

use super::*;

/// What one item of a commit writes, decided before the transaction (which may run its closure more than once, so
/// nothing costly happens in it).
pub(super) enum Planned<'a> {
    /// Not written: not an indexed type, or a malformed RID.
    Done(ApplyOutcome),
    /// An `orn:github.event` or `orn:github.repo` bundle to write, prepared elsewhere.
    Borrowed(&'a PreparedBundle),
    /// The same, prepared here.
    Owned(Box<PreparedBundle>),
}

/// A GitHub bundle made into what the index writes for it: the held value (manifest and compressed contents), the
/// repository details it tells, and for an event its row. Making it is the costly part of indexing (parsing the
/// contents, serialising and compressing them), so the node does it once, where the event is received, beside the
/// single writer rather than on it ([`crate::node::inbox`] keeps it in this form); the writer then only writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedBundle {
    pub(super) rid: Rid,
    pub(super) manifest: Manifest,
    /// The held value ([`held`]), with the contents unless they were left out.
    pub(super) held: Vec<u8>,
    /// Repository details the bundle tells, and the time they are from.
    pub(super) details: RepoDetails,
    pub(super) at: i64,
    /// For an event: its row. `None` for a repository bundle.
    pub(super) row: Option<EventRow>,
    /// When this node received it (µs), if not when it is written: an import keeps the source's time.
    pub(super) received: Option<i64>,
}

/// [`PreparedBundle`]'s fields but the held value, as [`PreparedBundle::encode`] writes them.
#[derive(Serialize, Deserialize)]
pub(super) struct PreparedHeader {
    pub(super) rid: Rid,
    pub(super) manifest: Manifest,
    #[serde(default, skip_serializing_if = "RepoDetails::is_empty")]
    pub(super) details: RepoDetails,
    pub(super) at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) row: Option<EventRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) received: Option<i64>,
}

impl PreparedBundle {
    /// Makes `bundle` ready to be written, contents included. `None` when the index would not write it (not an
    /// indexed type, a malformed RID, contents that make no row): such a bundle is left to
    /// [`Index::apply_bundles`], which says why.
    pub fn of(bundle: &Bundle) -> Option<PreparedBundle> {
        match Planned::try_of(bundle, None, true) {
            Ok(Planned::Owned(prepared)) => Some(*prepared),
            _ => None,
        }
    }

    /// The RID of its bundle.
    pub fn rid(&self) -> &Rid {
        &self.rid
    }

    /// Its bundle again (decompressing and parsing the contents): for the rare paths that need it whole, such
    /// as a dead letter.
    pub fn to_bundle(&self) -> Result<Bundle, IndexError> {
        let key = self.rid.as_str().as_bytes();
        let (manifest, contents) = held::decode(key, &self.held)?;
        Ok(Bundle {
            manifest,
            contents: contents.unwrap_or_default(),
        })
    }

    /// Everything but the held value, as JSON (stored apart by [`crate::node::inbox`]).
    pub fn header_json(&self) -> Vec<u8> {
        let header = PreparedHeader {
            rid: self.rid.clone(),
            manifest: self.manifest.clone(),
            details: self.details.clone(),
            at: self.at,
            row: self.row.clone(),
            received: self.received,
        };
        // Serialising our own types to JSON cannot fail.
        serde_json::to_vec(&header).unwrap_or_default()
    }

    /// The held value: the manifest and the compressed contents ([`held`]).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Put together again from [`PreparedBundle::header_json`] and [`PreparedBundle::held`].
    pub fn from_parts(
        header_json: &[u8],
        held: Vec<u8>,
    ) -> Result<PreparedBundle, serde_json::Error> {
        let header: PreparedHeader = serde_json::from_slice(header_json)?;
        Ok(PreparedBundle {
            rid: header.rid,
            manifest: header.manifest,
            held,
            details: header.details,
            at: header.at,
            row: header.row,
            received: header.received,
        })
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

/// A bundle for [`Index::apply`]: prepared where it was received, or as received.
#[derive(Debug, Clone)]
pub enum Ingest {
    /// Made ready by [`PreparedBundle::of`].
    Prepared(Box<PreparedBundle>),
    /// Not prepared (yet): [`Index::apply`] prepares it.
    Bundle(Box<Bundle>),
}

impl Ingest {
    /// Its RID.
    pub fn rid(&self) -> &Rid {
        match self {
            Ingest::Prepared(p) => p.rid(),
            Ingest::Bundle(b) => b.rid(),
        }
    }
}

impl<'a> Planned<'a> {
    /// Parses and serialises `bundle`. Never fails: a bundle that cannot be made into a row is
    /// [`ApplyOutcome::Invalid`] with the reason, and costs no other bundle of its batch anything.
    pub(super) fn of(bundle: &Bundle, received: Option<i64>, keep_contents: bool) -> Planned<'a> {
        Planned::try_of(bundle, received, keep_contents)
            .unwrap_or_else(|e| Planned::Done(ApplyOutcome::Invalid(e.to_string())))
    }

    /// What to write for an [`Ingest`]: a prepared bundle as it is (without its contents if the store keeps
    /// none), a bundle prepared now.
    pub(super) fn of_ingest(item: &'a Ingest, keep_contents: bool) -> Planned<'a> {
        match item {
            Ingest::Prepared(p) if keep_contents => Planned::Borrowed(p),
            Ingest::Prepared(p) => {
                let key = p.rid.as_str().as_bytes();
                match held::without_contents(key, &p.held) {
                    Ok(stripped) => {
                        let mut owned = PreparedBundle::clone(p);
                        if let Some(stripped) = stripped {
                            owned.held = stripped;
                        }
                        Planned::Owned(Box::new(owned))
                    }
                    Err(e) => Planned::Done(ApplyOutcome::Invalid(e.to_string())),
                }
            }
            Ingest::Bundle(b) => Planned::of(b, None, keep_contents),
        }
    }

    pub(super) fn try_of(
        bundle: &Bundle,
        received: Option<i64>,
        keep_contents: bool,
    ) -> Result<Planned<'a>, IndexError> {
        let rid = bundle.rid();
        let (details, at, row) = if rid.is_type(RidType::GITHUB_EVENT) {
            let event = match GithubEventRid::from_rid(rid) {
                Ok(event) => event,
                Err(e) => return Ok(Planned::Done(ApplyOutcome::BadRid(e.to_string()))),
            };
            let row = parse_event(&event, &bundle.manifest.timestamp, &bundle.contents);
            // Checked here, so that writing cannot fail on it: it is all `Entries::of` can fail on.
            let at = row_micros(&row)?;
            (
                repo_details_from_event(&event.full_name(), &bundle.contents),
                at,
                Some(row),
            )
        } else if rid.is_type(RidType::GITHUB_REPO) {
            if let Err(e) = GithubRepoRid::from_rid(rid) {
                return Ok(Planned::Done(ApplyOutcome::BadRid(e.to_string())));
            }
            let (details, time) = parse_repo_bundle(&bundle.contents);
            let at = time.unwrap_or(bundle.manifest.timestamp).unix_micros();
            (details, at, None)
        } else {
            return Ok(Planned::Done(ApplyOutcome::Ignored));
        };
        Ok(Planned::Owned(Box::new(PreparedBundle {
            rid: rid.clone(),
            manifest: bundle.manifest.clone(),
            held: held::encode_manifest(
                &bundle.manifest,
                keep_contents
                    .then(|| serde_json::to_vec(&bundle.contents))
                    .transpose()?
                    .as_deref(),
            )?,
            details,
            at,
            row,
            received,
        })))
    }
}
