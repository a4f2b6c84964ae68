//! Repositories: names as GitHub allows them, added and removed by hand, listed.

use super::*;

/// What [`Index::remove_repository`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoRemoval {
    /// Removed.
    Removed,
    /// Not indexed.
    NotFound,
    /// Indexed from the network, not added by hand: it stays.
    NotAddedByHand,
    /// Added by hand, but events of it have arrived since: it stays.
    HasEvents(u64),
}

impl RepoRemoval {
    /// Why repository `name` was not removed, in the words the API and the CLI both give; `None` if it was.
    pub fn refusal(&self, name: &str) -> Option<String> {
        match self {
            RepoRemoval::Removed => None,
            RepoRemoval::NotFound => Some(format!("repository {name} is not indexed")),
            RepoRemoval::NotAddedByHand => Some(format!(
                "repository {name} was not added by hand: its events came from the network, and it stays while \
                 they do"
            )),
            RepoRemoval::HasEvents(n) => Some(format!(
                "repository {name} has {n} events now; it can be removed only while it has none"
            )),
        }
    }
}

/// `owner/name` or a repository RID, naming a repository GitHub allows: what [`Index::add_repository`] takes.
pub fn check_repository_name(full_name_or_rid: &str) -> Result<GithubRepoRid, IndexError> {
    let repo = parse_repo_ref(full_name_or_rid)?;
    check_github_name(full_name_or_rid, repo.full_name())?;
    Ok(repo)
}

/// A repository name as GitHub allows it: owner 1–39 of `[A-Za-z0-9-]`, name 1–100 of `[A-Za-z0-9._-]`, and
/// neither `.` nor `..`.
pub fn check_github_name(input: &str, full_name: &str) -> Result<(), IndexError> {
    let invalid = |problem: &str| IndexError::InvalidRepository {
        input: input.to_owned(),
        problem: problem.to_owned(),
    };
    let (owner, name) = full_name
        .split_once('/')
        .ok_or_else(|| invalid("expected owner/name"))?;
    if owner.is_empty()
        || owner.len() > 39
        || !owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(invalid(
            "the owner must be 1 to 39 letters, digits or hyphens, as on GitHub",
        ));
    }
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        || name == "."
        || name == ".."
    {
        return Err(invalid(
            "the name must be 1 to 100 letters, digits, `.`, `_` or `-` (not `.` or `..`), as on GitHub",
        ));
    }
    Ok(())
}

/// How `rid` is stored, from user or URL text: `owner/name`, `orn:github.repo:owner/name` or a GitHub URL.
pub fn parse_repo_ref(text: &str) -> Result<GithubRepoRid, IndexError> {
    let invalid = |problem: String| IndexError::InvalidRepository {
        input: text.to_owned(),
        problem,
    };
    let trimmed = text.trim();
    if trimmed.starts_with("orn:") {
        let rid = Rid::parse(trimmed).map_err(|e| invalid(e.problem))?;
        return GithubRepoRid::from_rid(&rid).map_err(|e| invalid(e.problem));
    }
    let name = ["https://github.com/", "http://github.com/", "github.com/"]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p))
        .map(|rest| rest.trim_end_matches('/').trim_end_matches(".git"))
        .unwrap_or(trimmed);
    GithubRepoRid::parse_full_name(name).map_err(|e| invalid(e.problem))
}

impl Index {
    /// Adds a repository with no events yet (`add-repo`). Idempotent: returns the row and whether it was created.
    /// The name must be one GitHub allows ([`check_github_name`]).
    pub fn add_repository(&self, full_name_or_rid: &str) -> Result<(Repository, bool), IndexError> {
        let repo = check_repository_name(full_name_or_rid)?;
        let key = repo.rid().as_str();
        let now = now_text();
        let created = self.transaction(|tx| {
            if tx.repos.get(key)?.is_some() {
                return Ok(false);
            }
            tx.touch_repo(key, &now, 0, None)?;
            let mut record: RepoRecord = Tx::get(tx.repos, trees::REPOS, key.as_bytes())?
                .ok_or_else(|| {
                    abort(IndexError::Corrupt {
                        tree: trees::REPOS,
                        key: key.to_owned(),
                        problem: "the row just written is missing".into(),
                    })
                })?;
            record.manual = true;
            let bytes = serde_json::to_vec(&record).map_err(|e| abort(e.into()))?;
            tx.repos.insert(key.as_bytes(), bytes)?;
            Ok(true)
        })?;
        let row = self.repository(&repo)?.ok_or_else(|| IndexError::Corrupt {
            tree: trees::REPOS,
            key: key.to_owned(),
            problem: "the row just written is missing".into(),
        })?;
        Ok((row, created))
    }

    /// Removes a repository added by hand that has no events (`remove-repo`).
    pub fn remove_repository(&self, full_name_or_rid: &str) -> Result<RepoRemoval, IndexError> {
        let repo = parse_repo_ref(full_name_or_rid)?;
        let key = repo.rid().as_str();
        self.transaction(|tx| {
            let Some(record) = Tx::get::<RepoRecord>(tx.repos, trees::REPOS, key.as_bytes())?
            else {
                return Ok(RepoRemoval::NotFound);
            };
            if !record.manual {
                return Ok(RepoRemoval::NotAddedByHand);
            }
            if record.event_count > 0 {
                return Ok(RepoRemoval::HasEvents(record.event_count));
            }
            tx.repos.remove(key.as_bytes())?;
            tx.add(REPOS_COUNT, -1)?;
            Ok(RepoRemoval::Removed)
        })
    }

    /// Makes every write so far durable.
    pub async fn flush_async(&self) -> Result<(), IndexError> {
        self.meta.flush_async().await?;
        Ok(())
    }

    pub(super) fn repository_from(
        &self,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<Repository, IndexError> {
        let record: RepoRecord = decode(trees::REPOS, key, bytes)?;
        let latest_commit_sha = match record.id.and_then(|id| {
            self.repo_commits
                .scan_prefix(id.to_be_bytes())
                .values()
                .next()
        }) {
            Some(sha) => Some(String::from_utf8_lossy(&sha?).into_owned()),
            None => None,
        };
        let full_name = record
            .repo_rid
            .strip_prefix("orn:github.repo:")
            .unwrap_or(&record.repo_rid)
            .to_owned();
        let RepoDetails {
            repo_url,
            description,
            default_branch,
            stars,
            forks,
            license,
        } = record.details;
        Ok(Repository {
            repo_url: repo_url.unwrap_or_else(|| format!("https://github.com/{full_name}")),
            repo_rid: record.repo_rid,
            full_name,
            first_indexed: record.first_indexed,
            last_updated: record.last_updated,
            latest_commit_sha,
            event_count: record.event_count,
            description,
            default_branch,
            stars,
            forks,
            license,
        })
    }

    /// Every repository, most recently updated first.
    pub fn repositories(&self) -> Result<Vec<Repository>, IndexError> {
        let mut out = self
            .repos
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                self.repository_from(&key, &value)
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| {
            b.last_updated
                .cmp(&a.last_updated)
                .then_with(|| a.repo_rid.cmp(&b.repo_rid))
        });
        Ok(out)
    }

    /// One repository.
    pub fn repository(&self, repo: &GithubRepoRid) -> Result<Option<Repository>, IndexError> {
        let key = repo.rid().as_str().as_bytes();
        match self.repos.get(key)? {
            Some(bytes) => self.repository_from(key, &bytes).map(Some),
            None => Ok(None),
        }
    }
}
