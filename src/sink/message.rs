//! The message the sink publishes for one event version: its subject, headers and body. This is a stable,
//! documented format (docs/operations.md, "The message"); `Koi-Format-Version` changes if it ever has to.

use serde_json::{Map, Value};

use crate::index::SinkItem;

/// `Koi-Format-Version` of the messages this program writes.
pub const FORMAT_VERSION: &str = "1";

/// One message, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `<prefix>.<owner>.<repo>.<event_type>`, each part escaped ([`subject_token`]).
    pub subject: String,
    /// `Nats-Msg-Id`: `<event RID>@<sha256_hash>`, the same for every publish of this version, so JetStream
    /// drops a replay within its duplicate window.
    pub id: String,
    /// The other headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// JSON: the row as `/events` gives it, plus `repo`, `seq`, `version` and, when asked for, `contents`.
    pub body: Vec<u8>,
}

/// A subject token for `text`: ASCII letters, digits, `-` and `_` as they are; every other byte (`.`, `*`, `>`,
/// space, `%`, anything non-ASCII) as `%XX`, its hex value in capitals; an empty text as `%`. So `socket.io` is
/// `socket%2Eio`, and a token never holds a character NATS gives a meaning to.
pub fn subject_token(text: &str) -> String {
    if text.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A header value: the text without control characters (a header cannot hold a line break).
fn header_value(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

impl Message {
    /// The same message without its `contents` (and with `Koi-Contents-Omitted: too-large`), for a payload larger
    /// than the server takes; `None` when it has no contents to leave out.
    pub fn without_contents(&self) -> Option<Message> {
        let mut body: Map<String, Value> = serde_json::from_slice(&self.body).ok()?;
        body.remove("contents")?;
        let mut headers = self.headers.clone();
        headers.push(("Koi-Contents-Omitted", "too-large".to_owned()));
        Some(Message {
            subject: self.subject.clone(),
            id: self.id.clone(),
            headers,
            body: serde_json::to_vec(&body).ok()?,
        })
    }

    /// The message for `item` under `prefix`.
    pub fn of(item: &SinkItem, prefix: &str) -> Result<Message, serde_json::Error> {
        let row = &item.row;
        let repo = row
            .repo_rid
            .strip_prefix("orn:github.repo:")
            .unwrap_or(&row.repo_rid);
        let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
        let subject = format!(
            "{prefix}.{}.{}.{}",
            subject_token(owner),
            subject_token(name),
            subject_token(&row.event_type)
        );
        let mut body = match serde_json::to_value(row)? {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        body.insert("repo".into(), Value::String(repo.to_owned()));
        body.insert("seq".into(), Value::from(item.seq));
        body.insert("version".into(), Value::from(item.version));
        if let Some(contents) = &item.contents {
            body.insert("contents".into(), serde_json::to_value(contents)?);
        }
        let mut headers = vec![
            ("Koi-Format-Version", FORMAT_VERSION.to_owned()),
            ("Koi-Event-Rid", header_value(&row.event_rid)),
            ("Koi-Event-Type", header_value(&row.event_type)),
            ("Koi-Repo", header_value(repo)),
            ("Koi-Seq", item.seq.to_string()),
        ];
        if item.version > 0 {
            headers.push(("Koi-Update", "true".to_owned()));
        }
        Ok(Message {
            subject,
            id: header_value(&format!("{}@{}", row.event_rid, item.sha256_hash)),
            headers,
            body: serde_json::to_vec(&body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{EventRow, TimeSource};

    #[test]
    fn tokens_keep_names_and_escape_what_nats_reads() {
        assert_eq!(subject_token("octo-org"), "octo-org");
        assert_eq!(subject_token("socket.io"), "socket%2Eio");
        assert_eq!(subject_token("a*b>c d%"), "a%2Ab%3Ec%20d%25");
        assert_eq!(subject_token("é"), "%C3%A9");
        assert_eq!(subject_token(""), "%");
    }

    #[test]
    fn a_message_has_the_documented_subject_id_headers_and_body() {
        let row = EventRow {
            event_rid: "orn:github.event:octo/socket.io:42".into(),
            repo_rid: "orn:github.repo:octo/socket.io".into(),
            event_type: "push".into(),
            timestamp: "2026-12-04T12:00:00Z".into(),
            time_source: TimeSource::Event,
            commit_sha: None,
            summary: "pushed".into(),
            bundle_rid: "orn:github.event:octo/socket.io:42".into(),
            action: None,
            actor: Some("octocat".into()),
        };
        let item = SinkItem {
            row,
            seq: 7,
            version: 1,
            sha256_hash: "ab".repeat(32),
            contents: None,
        };
        let m = Message::of(&item, "github").unwrap();
        assert_eq!(m.subject, "github.octo.socket%2Eio.push");
        assert_eq!(
            m.id,
            format!("orn:github.event:octo/socket.io:42@{}", "ab".repeat(32))
        );
        assert!(m.headers.contains(&("Koi-Update", "true".to_owned())));
        assert!(m.headers.contains(&("Koi-Seq", "7".to_owned())));
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["repo"], "octo/socket.io");
        assert_eq!(body["seq"], 7);
        assert_eq!(body["summary"], "pushed");
        assert!(body.get("contents").is_none());
        assert!(m.without_contents().is_none(), "nothing to leave out");

        let mut contents = serde_json::Map::new();
        contents.insert("big".into(), Value::String("x".repeat(2 << 20)));
        let with = Message::of(
            &SinkItem {
                contents: Some(contents),
                ..item
            },
            "github",
        )
        .unwrap();
        let smaller = with.without_contents().unwrap();
        assert!(smaller.body.len() < 1000 && with.body.len() > 2 << 20);
        assert_eq!(
            (smaller.id.as_str(), smaller.subject.as_str()),
            (with.id.as_str(), with.subject.as_str())
        );
        assert!(smaller
            .headers
            .contains(&("Koi-Contents-Omitted", "too-large".to_owned())));
    }
}
