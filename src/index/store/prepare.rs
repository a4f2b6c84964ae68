//! Bundles made into what the index writes ([`PreparedBundle`]), once, before the writer's transaction: where the
//! event is received for the node, or just before the commit for the other ways in (imports, tests).

use std::borrow::Cow;

use super::*;

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

/// [`PreparedBundle`]'s fields but the held value: what the node's inbox keeps as JSON beside the held value
/// ([`PreparedBundle::header`], [`PreparedBundle::from_header`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct PreparedHeader {
    rid: Rid,
    manifest: Manifest,
    #[serde(default, skip_serializing_if = "RepoDetails::is_empty")]
    details: RepoDetails,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    row: Option<EventRow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    received: Option<i64>,
}

impl PreparedBundle {
    /// Makes `bundle` ready to be written, contents included. When the index would not write it, the outcome
    /// [`Index::apply`] would give it instead: [`ApplyOutcome::Ignored`] (not an indexed type),
    /// [`ApplyOutcome::BadRid`] or [`ApplyOutcome::Invalid`] (contents that make no row), with the reason.
    pub fn of(bundle: &Bundle) -> Result<PreparedBundle, ApplyOutcome> {
        PreparedBundle::made(bundle, None, true)
    }

    /// [`PreparedBundle::of`], with the time the bundle was first received when it is not now (an import), and
    /// the contents left out when the store keeps none.
    pub(super) fn made(
        bundle: &Bundle,
        received: Option<i64>,
        keep_contents: bool,
    ) -> Result<PreparedBundle, ApplyOutcome> {
        PreparedBundle::try_made(bundle, received, keep_contents)
            .map_err(|e| ApplyOutcome::Invalid(e.to_string()))?
    }

    /// The repository the bundle is about: an event's, or a repository bundle's own RID.
    pub(super) fn repo_rid(&self) -> &str {
        match &self.row {
            Some(row) => &row.repo_rid,
            None => self.rid.as_str(),
        }
    }

    /// Itself as a store that keeps no contents writes it: without them.
    pub(super) fn for_store(
        &self,
        keep_contents: bool,
    ) -> Result<Cow<'_, PreparedBundle>, ApplyOutcome> {
        if keep_contents {
            return Ok(Cow::Borrowed(self));
        }
        let key = self.rid.as_str().as_bytes();
        match held::without_contents(key, &self.held) {
            Ok(Some(stripped)) => Ok(Cow::Owned(PreparedBundle {
                held: stripped,
                ..self.clone()
            })),
            Ok(None) => Ok(Cow::Borrowed(self)),
            Err(e) => Err(ApplyOutcome::Invalid(e.to_string())),
        }
    }

    /// Parses and serialises `bundle`. The outer error is one that refuses this bundle alone (it becomes
    /// [`ApplyOutcome::Invalid`]); the inner one says why the index does not write it at all.
    fn try_made(
        bundle: &Bundle,
        received: Option<i64>,
        keep_contents: bool,
    ) -> Result<Result<PreparedBundle, ApplyOutcome>, IndexError> {
        let rid = bundle.rid();
        let (details, at, row) = if rid.is_type(RidType::GITHUB_EVENT) {
            let event = match GithubEventRid::from_rid(rid) {
                Ok(event) => event,
                Err(e) => return Ok(Err(ApplyOutcome::BadRid(e.to_string()))),
            };
            // A repository GitHub could not have is refused here, so that every repository indexed can be named
            // in the API's and the CLI's filters (which allow only GitHub's names).
            if let Err(e) = check_github_name(rid.as_str(), &event.full_name()) {
                return Ok(Err(ApplyOutcome::BadRid(e.to_string())));
            }
            let row = parse_event(&event, &bundle.manifest.timestamp, &bundle.contents);
            // Checked here, so that writing cannot fail on it: it is all `Entries::of` can fail on.
            let at = row_micros(&row)?;
            (
                repo_details_from_event(&event.full_name(), &bundle.contents),
                at,
                Some(row),
            )
        } else if rid.is_type(RidType::GITHUB_REPO) {
            if let Err(e) = GithubRepoRid::from_rid(rid)
                .map_err(|e| e.to_string())
                .and_then(|repo| {
                    check_github_name(rid.as_str(), repo.full_name()).map_err(|e| e.to_string())
                })
            {
                return Ok(Err(ApplyOutcome::BadRid(e)));
            }
            let (details, time) = parse_repo_bundle(&bundle.contents);
            let at = time.unwrap_or(bundle.manifest.timestamp).unix_micros();
            (details, at, None)
        } else {
            return Ok(Err(ApplyOutcome::Ignored));
        };
        let contents = keep_contents
            .then(|| serde_json::to_vec(&bundle.contents))
            .transpose()?;
        if let Some(json) = contents
            .as_ref()
            .filter(|json| json.len() > crate::compression::MAX_OUTPUT)
        {
            return Ok(Err(ApplyOutcome::Invalid(format!(
                "its contents are {} bytes of JSON, more than the {} MiB the store keeps for one bundle",
                json.len(),
                crate::compression::MAX_OUTPUT / (1024 * 1024)
            ))));
        }
        Ok(Ok(PreparedBundle {
            rid: rid.clone(),
            manifest: bundle.manifest.clone(),
            held: held::encode_manifest(&bundle.manifest, contents.as_deref())?,
            details,
            at,
            row,
            received,
        }))
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

    /// Everything but the held value (stored apart from it by [`crate::node::inbox`]).
    pub fn header(&self) -> PreparedHeader {
        PreparedHeader {
            rid: self.rid.clone(),
            manifest: self.manifest.clone(),
            details: self.details.clone(),
            at: self.at,
            row: self.row.clone(),
            received: self.received,
        }
    }

    /// The held value: the manifest and the compressed contents ([`held`]).
    pub fn held(&self) -> &[u8] {
        &self.held
    }

    /// Put together again from [`PreparedBundle::header`] and [`PreparedBundle::held`].
    pub fn from_header(header: PreparedHeader, held: Vec<u8>) -> PreparedBundle {
        PreparedBundle {
            rid: header.rid,
            manifest: header.manifest,
            held,
            details: header.details,
            at: header.at,
            row: header.row,
            received: header.received,
        }
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// For an event, its row.
    pub fn row(&self) -> Option<&EventRow> {
        self.row.as_ref()
    }
}
