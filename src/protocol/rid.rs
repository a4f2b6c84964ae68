//! Resource identifiers (RIDs) as rid-lib 3.3 writes them.
//!
//! A RID is either `scheme:namespace:reference` (`orn:` and `urn:` RIDs; the namespace may contain dots) or a
//! plain `http(s)://` URL. Its *type* is `scheme:namespace` (`orn:github.event`), or the scheme alone for URLs.
//! [`Rid`] validates the general form; the typed views ([`NodeRid`], [`EdgeRid`], [`GithubEventRid`],
//! [`GithubRepoRid`]) check and split the reference of the RID types this node understands.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a string is not a valid RID (or not a valid RID of the expected type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RID `{rid}`: {problem}")]
pub struct RidError {
    /// The offending text, as given.
    pub rid: String,
    /// What is wrong with it, in words.
    pub problem: String,
}

impl RidError {
    fn new(rid: &str, problem: impl Into<String>) -> Self {
        RidError {
            rid: rid.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A validated RID. Cheap to clone; compares and hashes by its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rid {
    text: String,
    /// Byte length of the type prefix (`orn:github.event`) within `text`.
    type_len: usize,
}

impl Rid {
    /// Parses and validates a RID.
    pub fn parse(text: &str) -> Result<Rid, RidError> {
        if text.is_empty() {
            return Err(RidError::new(text, "it is empty"));
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(RidError::new(
                text,
                format!("it contains the character {c:?}; RIDs have no whitespace or control characters"),
            ));
        }
        let Some((scheme, rest)) = text.split_once(':') else {
            return Err(RidError::new(
                text,
                "no `:` found; expected `scheme:namespace:reference` or a URL",
            ));
        };
        if scheme.is_empty()
            || !scheme.starts_with(|c: char| c.is_ascii_lowercase())
            || !scheme
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        {
            return Err(RidError::new(
                text,
                format!("scheme `{scheme}` must be lowercase letters, digits, `+`, `-` or `.`"),
            ));
        }
        match scheme {
            "http" | "https" => {
                let Some(after) = rest.strip_prefix("//") else {
                    return Err(RidError::new(
                        text,
                        "a URL RID must start with `http://` or `https://`",
                    ));
                };
                if after.is_empty() || after.starts_with('/') {
                    return Err(RidError::new(text, "the URL has no host"));
                }
                Ok(Rid {
                    text: text.to_owned(),
                    type_len: scheme.len(),
                })
            }
            "orn" | "urn" => {
                let Some((namespace, reference)) = rest.split_once(':') else {
                    return Err(RidError::new(
                        text,
                        format!("expected `{scheme}:<namespace>:<reference>`, found no second `:`"),
                    ));
                };
                if namespace.is_empty() {
                    return Err(RidError::new(text, "the namespace is empty"));
                }
                if !namespace
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                {
                    return Err(RidError::new(
                        text,
                        format!("namespace `{namespace}` may only hold letters, digits, `-`, `.` and `_`"),
                    ));
                }
                if reference.is_empty() {
                    return Err(RidError::new(
                        text,
                        "the reference (after the namespace) is empty",
                    ));
                }
                Ok(Rid {
                    text: text.to_owned(),
                    type_len: scheme.len() + 1 + namespace.len(),
                })
            }
            other => Err(RidError::new(
                text,
                format!("unsupported scheme `{other}`; expected `orn`, `urn`, `http` or `https`"),
            )),
        }
    }

    /// The RID as text, exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The RID type: `scheme:namespace` (e.g. `orn:github.event`), or the scheme for URL RIDs.
    pub fn rid_type(&self) -> RidType {
        RidType(self.text[..self.type_len].to_owned())
    }

    /// Whether this RID is of the given type, without allocating.
    pub fn is_type(&self, rid_type: &str) -> bool {
        &self.text[..self.type_len] == rid_type
    }

    /// The reference: everything after the type and its `:` (empty for URLs, whose whole text is the reference).
    pub fn reference(&self) -> &str {
        if self.text.len() > self.type_len && self.text.as_bytes()[self.type_len] == b':' {
            &self.text[self.type_len + 1..]
        } else {
            ""
        }
    }
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rid({})", self.text)
    }
}

impl FromStr for Rid {
    type Err = RidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rid::parse(s)
    }
}

impl AsRef<str> for Rid {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Serialize for Rid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Rid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Rid::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A RID type such as `orn:github.event` or `orn:koi-net.node`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RidType(String);

impl RidType {
    /// `orn:koi-net.node`: node profiles.
    pub const NODE: &'static str = "orn:koi-net.node";
    /// `orn:koi-net.edge`: edge profiles.
    pub const EDGE: &'static str = "orn:koi-net.edge";
    /// `orn:github.event`: one GitHub event as a sensor saw it.
    pub const GITHUB_EVENT: &'static str = "orn:github.event";
    /// `orn:github.repo`: a repository's details.
    pub const GITHUB_REPO: &'static str = "orn:github.repo";

    /// Parses a RID type: `scheme:namespace` for `orn`/`urn`, or a bare URL scheme.
    pub fn parse(text: &str) -> Result<RidType, RidError> {
        let probe = if text.starts_with("http") && !text.contains(':') {
            format!("{text}://host")
        } else {
            format!("{text}:x")
        };
        let rid = Rid::parse(&probe).map_err(|e| RidError::new(text, e.problem))?;
        if rid.rid_type().0 != text {
            return Err(RidError::new(
                text,
                "a RID type is `scheme:namespace` with no reference",
            ));
        }
        Ok(RidType(text.to_owned()))
    }

    /// The type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RidType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RidType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RidType({})", self.0)
    }
}

impl FromStr for RidType {
    type Err = RidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RidType::parse(s)
    }
}

impl PartialEq<str> for RidType {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RidType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

fn is_lower_hex_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn expect_type(rid: &Rid, rid_type: &str) -> Result<(), RidError> {
    if rid.is_type(rid_type) {
        Ok(())
    } else {
        Err(RidError::new(
            rid.as_str(),
            format!(
                "expected a `{rid_type}` RID, found type `{}`",
                rid.rid_type()
            ),
        ))
    }
}

/// `orn:koi-net.node:<name>+<hash>`: a node, named by its owner and pinned to its public key by `hash`
/// (hex SHA-256 of the base64 DER public key string in its profile).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeRid {
    rid: Rid,
    plus: usize,
}

impl NodeRid {
    /// Checks that `rid` is a node RID of the form `<name>+<64 hex>`.
    pub fn from_rid(rid: &Rid) -> Result<NodeRid, RidError> {
        expect_type(rid, RidType::NODE)?;
        let reference = rid.reference();
        let Some(plus) = reference.rfind('+') else {
            return Err(RidError::new(
                rid.as_str(),
                "a node RID is `<name>+<sha256 hex>`: no `+` found",
            ));
        };
        let (name, hash) = (&reference[..plus], &reference[plus + 1..]);
        if name.is_empty() {
            return Err(RidError::new(rid.as_str(), "the node name is empty"));
        }
        if !is_lower_hex_sha256(hash) {
            return Err(RidError::new(
                rid.as_str(),
                "the part after `+` must be 64 lowercase hex digits (SHA-256 of the public key)",
            ));
        }
        Ok(NodeRid {
            rid: rid.clone(),
            plus: RidType::NODE.len() + 1 + plus,
        })
    }

    /// Builds the RID of a node called `name` whose profile carries `public_key_b64`.
    pub fn from_public_key(name: &str, public_key_b64: &str) -> Result<NodeRid, RidError> {
        let hash = hex::encode(Sha256::digest(public_key_b64.as_bytes()));
        let rid = Rid::parse(&format!("{}:{name}+{hash}", RidType::NODE))?;
        NodeRid::from_rid(&rid)
    }

    /// The node's name (before the `+`).
    pub fn name(&self) -> &str {
        &self.rid.as_str()[RidType::NODE.len() + 1..self.plus]
    }

    /// The key hash (after the `+`).
    pub fn hash(&self) -> &str {
        &self.rid.as_str()[self.plus + 1..]
    }

    /// Whether `public_key_b64` is the key this RID names.
    pub fn matches_public_key(&self, public_key_b64: &str) -> bool {
        hex::encode(Sha256::digest(public_key_b64.as_bytes())) == self.hash()
    }

    /// The plain RID.
    pub fn rid(&self) -> &Rid {
        &self.rid
    }
}

/// `orn:koi-net.edge:<hex sha256(source + target)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeRid(Rid);

impl EdgeRid {
    /// Checks that `rid` is an edge RID.
    pub fn from_rid(rid: &Rid) -> Result<EdgeRid, RidError> {
        expect_type(rid, RidType::EDGE)?;
        if !is_lower_hex_sha256(rid.reference()) {
            return Err(RidError::new(
                rid.as_str(),
                "an edge RID's reference must be 64 lowercase hex digits",
            ));
        }
        Ok(EdgeRid(rid.clone()))
    }

    /// The RID koi-net gives the edge from `source` to `target`.
    pub fn between(source: &Rid, target: &Rid) -> EdgeRid {
        let mut hasher = Sha256::new();
        hasher.update(source.as_str().as_bytes());
        hasher.update(target.as_str().as_bytes());
        let text = format!("{}:{}", RidType::EDGE, hex::encode(hasher.finalize()));
        EdgeRid(Rid {
            type_len: RidType::EDGE.len(),
            text,
        })
    }

    /// The plain RID.
    pub fn rid(&self) -> &Rid {
        &self.0
    }
}

/// Splits `<owner>/<repo>` and checks both parts are present.
fn split_owner_repo<'a>(rid: &Rid, text: &'a str) -> Result<(&'a str, &'a str), RidError> {
    let Some((owner, repo)) = text.split_once('/') else {
        return Err(RidError::new(
            rid.as_str(),
            "expected `<owner>/<repo>`: no `/` found",
        ));
    };
    if owner.is_empty() || repo.is_empty() || repo.contains('/') {
        return Err(RidError::new(
            rid.as_str(),
            format!("`{text}` is not `<owner>/<repo>`"),
        ));
    }
    Ok((owner, repo))
}

/// `orn:github.event:<owner>/<repo>:<event id>`; the event id may itself contain `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GithubEventRid {
    rid: Rid,
    owner: String,
    repo: String,
    event_id: String,
}

impl GithubEventRid {
    /// Checks and splits a GitHub event RID.
    pub fn from_rid(rid: &Rid) -> Result<GithubEventRid, RidError> {
        expect_type(rid, RidType::GITHUB_EVENT)?;
        let Some((repo_part, event_id)) = rid.reference().split_once(':') else {
            return Err(RidError::new(
                rid.as_str(),
                "expected `orn:github.event:<owner>/<repo>:<event id>`: no `:` after the repository",
            ));
        };
        if event_id.is_empty() {
            return Err(RidError::new(rid.as_str(), "the event id is empty"));
        }
        let (owner, repo) = split_owner_repo(rid, repo_part)?;
        Ok(GithubEventRid {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            event_id: event_id.to_owned(),
            rid: rid.clone(),
        })
    }

    /// Repository owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }
    /// Repository name.
    pub fn repo(&self) -> &str {
        &self.repo
    }
    /// The sensor's id for the event (may contain `:`).
    pub fn event_id(&self) -> &str {
        &self.event_id
    }
    /// `<owner>/<repo>`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
    /// The repository this event belongs to.
    pub fn repo_rid(&self) -> GithubRepoRid {
        GithubRepoRid::new(&self.owner, &self.repo)
    }
    /// The plain RID.
    pub fn rid(&self) -> &Rid {
        &self.rid
    }
}

/// `orn:github.repo:<owner>/<repo>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GithubRepoRid {
    rid: Rid,
    slash: usize,
}

impl GithubRepoRid {
    /// Checks and splits a repository RID.
    pub fn from_rid(rid: &Rid) -> Result<GithubRepoRid, RidError> {
        expect_type(rid, RidType::GITHUB_REPO)?;
        let (owner, _) = split_owner_repo(rid, rid.reference())?;
        Ok(GithubRepoRid {
            slash: owner.len(),
            rid: rid.clone(),
        })
    }

    /// The repository RID for `owner/repo`. Panics never: invalid parts yield a RID that fails to parse, so
    /// callers with untrusted text should use [`GithubRepoRid::parse_full_name`].
    fn new(owner: &str, repo: &str) -> GithubRepoRid {
        let text = format!("{}:{owner}/{repo}", RidType::GITHUB_REPO);
        GithubRepoRid {
            slash: owner.len(),
            rid: Rid {
                type_len: RidType::GITHUB_REPO.len(),
                text,
            },
        }
    }

    /// Parses `owner/name` (as users type it) into a repository RID.
    pub fn parse_full_name(full_name: &str) -> Result<GithubRepoRid, RidError> {
        let rid = Rid::parse(&format!("{}:{full_name}", RidType::GITHUB_REPO))
            .map_err(|e| RidError::new(full_name, e.problem))?;
        GithubRepoRid::from_rid(&rid).map_err(|e| RidError::new(full_name, e.problem))
    }

    /// Repository owner.
    pub fn owner(&self) -> &str {
        &self.rid.reference()[..self.slash]
    }
    /// Repository name.
    pub fn repo(&self) -> &str {
        &self.rid.reference()[self.slash + 1..]
    }
    /// `<owner>/<repo>`.
    pub fn full_name(&self) -> &str {
        self.rid.reference()
    }
    /// The plain RID.
    pub fn rid(&self) -> &Rid {
        &self.rid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orn_urn_and_url_rids_with_their_types() {
        let rid = Rid::parse("orn:github.event:octo-org/hello-world:push-1a2b3c").unwrap();
        assert_eq!(rid.rid_type(), "orn:github.event");
        assert_eq!(rid.reference(), "octo-org/hello-world:push-1a2b3c");
        assert_eq!(
            rid.to_string(),
            "orn:github.event:octo-org/hello-world:push-1a2b3c"
        );
        assert_eq!(
            Rid::parse("urn:isbn:0451450523").unwrap().rid_type(),
            "urn:isbn"
        );
        let url = Rid::parse("https://github.com/octo-org/hello-world").unwrap();
        assert_eq!(url.rid_type(), "https");
    }

    #[test]
    fn malformed_rids_name_the_rid_and_the_problem() {
        for (text, needle) in [
            ("", "empty"),
            ("orn", "no `:`"),
            ("orn:github.event", "no second `:`"),
            ("orn::x", "namespace is empty"),
            ("orn:github.event:", "reference"),
            ("ORN:x:y", "lowercase"),
            ("orn:git hub:x", "whitespace"),
            ("ftp:x:y", "unsupported scheme"),
            ("https:/x", "http"),
        ] {
            let err = Rid::parse(text).unwrap_err();
            assert_eq!(err.rid, text);
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn github_event_id_may_contain_colons() {
        let rid = Rid::parse("orn:github.event:rust-lang/rust:commit:abc:def").unwrap();
        let ev = GithubEventRid::from_rid(&rid).unwrap();
        assert_eq!(
            (ev.owner(), ev.repo(), ev.event_id()),
            ("rust-lang", "rust", "commit:abc:def")
        );
        assert_eq!(
            ev.repo_rid().rid().as_str(),
            "orn:github.repo:rust-lang/rust"
        );
        for bad in [
            "orn:github.event:norepo",
            "orn:github.event:a/b:",
            "orn:github.event:/b:1",
            "orn:github.repo:a/b",
        ] {
            assert!(
                GithubEventRid::from_rid(&Rid::parse(bad).unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn github_repo_rid_views() {
        let repo = GithubRepoRid::parse_full_name("octo-org/hello-world").unwrap();
        assert_eq!(repo.owner(), "octo-org");
        assert_eq!(repo.repo(), "hello-world");
        assert_eq!(repo.rid().as_str(), "orn:github.repo:octo-org/hello-world");
        assert!(GithubRepoRid::parse_full_name("nope").is_err());
        assert!(GithubRepoRid::parse_full_name("a/b/c").is_err());
    }

    #[test]
    fn node_rid_is_pinned_to_the_public_key() {
        // From the recorded session: the coordinator's profile and RID.
        let key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAESuyq/gflNMAVHKCSWZ33SZHg6oXAQ841V14QUdWyil+YY0i8sozSJjwa+fUjnYUqr8vgThIkXKb7bAiGxo9ckw==";
        let node = NodeRid::from_public_key("coordinator", key).unwrap();
        assert_eq!(
            node.rid().as_str(),
            "orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50"
        );
        assert_eq!(node.name(), "coordinator");
        assert!(node.matches_public_key(key));
        assert!(!node.matches_public_key("other"));
        assert!(NodeRid::from_rid(&Rid::parse("orn:koi-net.node:x+abc").unwrap()).is_err());
        assert!(NodeRid::from_rid(&Rid::parse("orn:koi-net.node:noplus").unwrap()).is_err());
    }

    #[test]
    fn edge_rid_matches_the_recording() {
        let source = Rid::parse("orn:koi-net.node:coordinator+7538f71072bc0505382389554aaff429b269546acf27178a028ef5ee26f4cc50").unwrap();
        let target = Rid::parse("orn:koi-net.node:gh_partial+b15c70e5ed8107739e1b1d92ca597be6d00ca3ebca8830a8e4fe661c97c3f07e").unwrap();
        assert_eq!(
            EdgeRid::between(&source, &target).rid().as_str(),
            "orn:koi-net.edge:df26df83d13655d6916030444833f2edb51b91f893a57ba691e090244d7f7df8"
        );
    }

    #[test]
    fn rid_types_parse() {
        assert_eq!(
            RidType::parse("orn:github.event").unwrap(),
            "orn:github.event"
        );
        assert!(RidType::parse("orn:github.event:x").is_err());
        assert!(RidType::parse("orn").is_err());
    }
}
