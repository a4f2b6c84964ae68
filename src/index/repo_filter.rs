//! Repository patterns, as `[[action]] repos` and `index.repos` write them: `owner/name`, or `owner/*` for every
//! repository of an owner; compared without regard to case, as GitHub compares names. An empty list matches all.

use serde::{Deserialize, Serialize};

/// A list of `owner/name` and `owner/*` patterns; empty matches every repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RepoFilter(pub Vec<String>);

impl RepoFilter {
    /// Whether the filter lets every repository through (an empty list).
    pub fn is_all(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `full_name` (`owner/name`) is one of the patterns' repositories.
    pub fn matches(&self, full_name: &str) -> bool {
        self.0.is_empty()
            || self
                .0
                .iter()
                .any(|pattern| match pattern.strip_suffix("/*") {
                    Some(owner) => full_name
                        .split_once('/')
                        .is_some_and(|(o, _)| o.eq_ignore_ascii_case(owner)),
                    None => pattern.eq_ignore_ascii_case(full_name),
                })
    }

    /// Whether a repository RID (`orn:github.repo:owner/name`) is one of the patterns' repositories.
    pub fn matches_rid(&self, repo_rid: &str) -> bool {
        self.matches(super::feeds::full_name(repo_rid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_owner_wildcards_match_without_case() {
        let f = RepoFilter(vec!["Octo/Hello".into(), "rust-lang/*".into()]);
        assert!(f.matches("octo/hello"));
        assert!(!f.matches("octo/hello2"));
        assert!(f.matches("RUST-LANG/rust"));
        assert!(!f.matches("rust-lang-nursery/x"));
        assert!(f.matches_rid("orn:github.repo:rust-lang/cargo"));
        assert!(RepoFilter::default().matches("any/thing"));
    }
}
