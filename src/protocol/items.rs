//! Verified response payloads read item by item.
//!
//! A response's signature covers its whole payload, but one event, manifest or bundle inside it that does not
//! parse (a RID with a space, contents that are a list, nesting deeper than the parser allows) must cost only
//! itself, never the other items. So the payload is first split into the raw text of each item (splitting does
//! not recurse into the items, so any depth splits), then each item is parsed on its own into `Ok(item)` or a
//! [`BadItem`] that says what was wrong.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::knowledge::{Bundle, Event, Manifest};
use super::rid::Rid;

/// Why one item of a verified payload was not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadItemKind {
    /// Its RID does not parse (whitespace, control characters, no type…).
    BadRid,
    /// It is not a well-formed event, manifest or bundle (wrong types, missing fields, nested too deep).
    Malformed,
}

/// One item that did not parse, kept as received so it can be reported and dead-lettered.
#[derive(Debug, Clone)]
pub struct BadItem {
    /// What was wrong, broadly.
    pub kind: BadItemKind,
    /// The RID text it claims, if it has one (unvalidated: may hold control characters).
    pub rid: Option<String>,
    /// The parser's words.
    pub problem: String,
    /// The item's JSON text exactly as received.
    pub raw: String,
}

/// An item of a payload: parsed, or why not.
pub type Item<T> = Result<T, BadItem>;

/// A verified response payload, split into items, each parsed on its own.
#[derive(Debug)]
pub enum ResponseItems {
    /// `events_payload`
    Events(Vec<Item<Event>>),
    /// `manifests_payload`
    Manifests {
        /// Manifests found.
        manifests: Vec<Item<Manifest>>,
        /// RIDs asked for but not held (unparseable ones are left out).
        not_found: Vec<Rid>,
    },
    /// `bundles_payload`
    Bundles {
        /// Bundles found.
        bundles: Vec<Item<Bundle>>,
        /// RIDs asked for but not held (unparseable ones are left out).
        not_found: Vec<Rid>,
    },
    /// `rids_payload`
    Rids(Vec<Item<Rid>>),
}

#[derive(Deserialize)]
struct Split<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, borrow)]
    events: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    manifests: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    bundles: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    rids: Option<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    not_found: Option<Vec<&'a RawValue>>,
}

/// Where an item keeps its RID: `{"rid": …}` or `{"manifest": {"rid": …}}`.
#[derive(Deserialize)]
struct RidField {
    #[serde(default)]
    rid: Option<serde_json::Value>,
    #[serde(default)]
    manifest: Option<Box<RawValue>>,
}

fn claimed_rid(raw: &str) -> Option<String> {
    if let Ok(serde_json::Value::String(s)) = serde_json::from_str::<serde_json::Value>(raw) {
        return Some(s);
    }
    let field: RidField = serde_json::from_str(raw).ok()?;
    match (field.rid, field.manifest) {
        (Some(serde_json::Value::String(s)), _) => Some(s),
        (_, Some(manifest)) => claimed_rid(manifest.get()),
        _ => None,
    }
}

fn parse_item<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Item<T> {
    serde_json::from_str(raw.get()).map_err(|e| {
        let rid = claimed_rid(raw.get());
        let kind = match &rid {
            Some(text) if Rid::parse(text).is_err() => BadItemKind::BadRid,
            _ => BadItemKind::Malformed,
        };
        let problem = match (&rid, kind) {
            (Some(text), BadItemKind::BadRid) => Rid::parse(text)
                .err()
                .map_or_else(|| e.to_string(), |re| re.to_string()),
            _ => e.to_string(),
        };
        BadItem {
            kind,
            rid,
            problem,
            raw: raw.get().to_owned(),
        }
    })
}

fn parse_all<T: serde::de::DeserializeOwned>(raws: Option<Vec<&RawValue>>) -> Vec<Item<T>> {
    raws.unwrap_or_default()
        .into_iter()
        .map(|raw| parse_item(raw))
        .collect()
}

fn good_rids(raws: Option<Vec<&RawValue>>) -> Vec<Rid> {
    parse_all::<Rid>(raws).into_iter().flatten().collect()
}

impl ResponseItems {
    /// Splits a payload's JSON text (already verified) and parses each item. Errs only when the payload itself is
    /// not an object with a known `type` and its list: then no item can be told apart from another.
    pub fn parse(payload: &str) -> Result<ResponseItems, serde_json::Error> {
        let split: Split<'_> = serde_json::from_str(payload)?;
        let missing = |field: &str| {
            <serde_json::Error as serde::de::Error>::custom(format!(
                "{} without its `{field}` list",
                split.kind
            ))
        };
        Ok(match split.kind.as_str() {
            "events_payload" => ResponseItems::Events(parse_all(Some(
                split.events.ok_or_else(|| missing("events"))?,
            ))),
            "manifests_payload" => ResponseItems::Manifests {
                manifests: parse_all(Some(split.manifests.ok_or_else(|| missing("manifests"))?)),
                not_found: good_rids(split.not_found),
            },
            "bundles_payload" => ResponseItems::Bundles {
                bundles: parse_all(Some(split.bundles.ok_or_else(|| missing("bundles"))?)),
                not_found: good_rids(split.not_found),
            },
            "rids_payload" => {
                ResponseItems::Rids(parse_all(Some(split.rids.ok_or_else(|| missing("rids"))?)))
            }
            other => {
                return Err(<serde_json::Error as serde::de::Error>::custom(format!(
                    "unknown response payload type `{other}`"
                )))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn one_bad_item_costs_only_itself() {
        let good = r#"{"rid":"orn:github.event:a/b:1","event_type":"FORGET"}"#;
        let payload = format!(
            r#"{{"type":"events_payload","events":[{good},
               {{"rid":"orn:github.event:a/b:has space","event_type":"FORGET"}},
               {{"rid":"orn:github.event:a/b:nul\u0000","event_type":"FORGET"}},
               {{"rid":"orn:github.event:a/b:deep","event_type":"NEW","manifest":null,"contents":{{"x":{deep}}}}},
               {{"rid":"orn:github.event:a/b:list","event_type":"NEW","contents":[1,2]}},
               {good}]}}"#,
            deep = nested(500)
        );
        let ResponseItems::Events(items) = ResponseItems::parse(&payload).unwrap() else {
            panic!("events")
        };
        assert_eq!(items.len(), 6);
        assert!(items[0].is_ok() && items[5].is_ok());
        let bad: Vec<_> = items[1..5]
            .iter()
            .map(|i| i.as_ref().unwrap_err())
            .collect();
        assert_eq!(bad[0].kind, BadItemKind::BadRid);
        assert_eq!(bad[1].kind, BadItemKind::BadRid);
        assert_eq!(bad[1].rid.as_deref(), Some("orn:github.event:a/b:nul\0"));
        assert_eq!(bad[2].kind, BadItemKind::Malformed);
        assert!(bad[2].problem.contains("recursion"), "{}", bad[2].problem);
        assert_eq!(bad[3].kind, BadItemKind::Malformed);
    }

    #[test]
    fn bundles_name_their_rid_from_the_manifest() {
        let payload = r#"{"type":"bundles_payload","bundles":[{"manifest":{"rid":"bad rid","timestamp":"2026-01-01T00:00:00Z","sha256_hash":"00"},"contents":{}}],"not_found":["orn:github.event:a/b:1", "bad one"],"deferred":[]}"#;
        let ResponseItems::Bundles { bundles, not_found } = ResponseItems::parse(payload).unwrap()
        else {
            panic!("bundles")
        };
        let bad = bundles[0].as_ref().unwrap_err();
        assert_eq!(bad.kind, BadItemKind::BadRid);
        assert_eq!(bad.rid.as_deref(), Some("bad rid"));
        assert_eq!(not_found.len(), 1);
    }

    #[test]
    fn a_payload_without_its_list_is_an_error() {
        assert!(ResponseItems::parse(r#"{"type":"events_payload"}"#).is_err());
        assert!(ResponseItems::parse(r#"{"type":"nope","events":[]}"#).is_err());
        assert!(ResponseItems::parse("[]").is_err());
    }
}
