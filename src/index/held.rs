//! How a bundle is held in `index.bundles`: its manifest and its contents as **one value**, the contents
//! compressed with zstd.
//!
//! ```text
//! [flags: u8][manifest length: u32 BE][manifest][zstd(contents JSON), when flags & CONTENTS]
//! ```
//!
//! The manifest comes first and uncompressed, so the dedupe check (which reads only the manifest) never
//! decompresses anything. It is JSON (values written before 2026-11-27, and the schema-2 upgrade), or, when
//! `flags & COMPACT`, the manifest without what the key already says (58 bytes for a koi-net 2.1 manifest instead
//! of about 230):
//!
//! ```text
//! [timestamp length: u8][timestamp, RFC 3339 as the JSON would have it]
//! [the SHA-256: 32 bytes; or with flags & HASH_TEXT: [length: u8][the text as received]]
//! [the keys beyond rid, timestamp and sha256_hash as a JSON object; nothing when there are none, or when they are
//!  exactly koi-net's `{"@context": "orn:koi-net.context:manifest"}` and flags & KOI_CONTEXT]
//! ```
//!
//! The RID is the key's. A value without contents is a tombstone (retention pruned the event) or a store kept with
//! `index.keep_contents = false`.

use super::error::IndexError;
use crate::protocol::knowledge::MANIFEST_CONTEXT;
use crate::protocol::{Contents, Manifest, Rid, Timestamp};

/// Tree name.
pub const TREE: &str = "index.bundles";
/// `flags` bit: contents follow the manifest.
const CONTENTS: u8 = 1;
/// `flags` bit: the manifest is in the compact form.
const COMPACT: u8 = 2;
/// `flags` bit: the compact manifest's hash is text (it was not 64 lowercase hex digits).
const HASH_TEXT: u8 = 4;
/// `flags` bit: the compact manifest's other keys are koi-net's standard `@context`.
const KOI_CONTEXT: u8 = 8;
/// `flags` bit: the contents were compressed with [`CONTENTS_DICTIONARY`].
const DICTIONARY: u8 = 16;

/// A zstd raw-content dictionary for bundle contents: GitHub event contents of the shapes the sensors send
/// (`tests/fixtures/github-event-contents.json`, concatenated), so the keys, URLs and objects every event repeats
/// cost a few bytes each. About 17 % smaller contents, and faster to compress (docs/benchmarks.md). **Never change
/// this file**: values written with it need it to be read. A better dictionary gets a file and a flag of its own.
static CONTENTS_DICTIONARY: &[u8] = include_bytes!("contents-dictionary.json");

/// [`CONTENTS_DICTIONARY`] prepared once for compressing.
static COMPRESSION_DICTIONARY: std::sync::LazyLock<CDict<'static>> =
    std::sync::LazyLock::new(|| CDict::create(CONTENTS_DICTIONARY, LEVEL));
/// [`CONTENTS_DICTIONARY`] for reading frames back ([`crate::compression`]).
static DECOMPRESSION_DICTIONARY: RawDictionary = RawDictionary {
    id: 1,
    content: CONTENTS_DICTIONARY,
};
/// zstd level: 3 is zstd's default, a good ratio at a few hundred MB/s on this machine's core.
const LEVEL: i32 = 3;

use crate::compression::RawDictionary;
use zstd::zstd_safe::{CCtx, CDict};

thread_local! {
    /// One compression context per thread: creating one costs about as much as compressing a small bundle.
    static COMPRESSOR: std::cell::RefCell<CCtx<'static>> = std::cell::RefCell::new(CCtx::create());
}

fn zstd_error(code: usize) -> std::io::Error {
    std::io::Error::other(zstd::zstd_safe::get_error_name(code))
}

fn encode_error(e: std::io::Error) -> IndexError {
    IndexError::Encode(<serde_json::Error as serde::ser::Error>::custom(format!(
        "compressing contents: {e}"
    )))
}

/// `json` compressed at [`LEVEL`] into one zstd frame (its size in the header), with this thread's context.
pub fn compress(json: &[u8]) -> Result<Vec<u8>, IndexError> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
    COMPRESSOR
        .with(|cctx| cctx.borrow_mut().compress(&mut out, json, LEVEL))
        .map_err(|code| encode_error(zstd_error(code)))?;
    Ok(out)
}

/// Contents JSON compressed with [`CONTENTS_DICTIONARY`], with this thread's context.
fn compress_contents(json: &[u8]) -> Result<Vec<u8>, IndexError> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(json.len()));
    COMPRESSOR
        .with(|cctx| {
            cctx.borrow_mut()
                .compress_using_cdict(&mut out, json, &COMPRESSION_DICTIONARY)
        })
        .map_err(|code| encode_error(zstd_error(code)))?;
    Ok(out)
}

/// What [`compress_contents`] wrote, decompressed.
fn decompress_contents(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    crate::compression::decompress_with(frame, &DECOMPRESSION_DICTIONARY)
}

/// The value for a manifest (JSON) and, when kept, its contents (JSON, compressed here).
pub fn encode(manifest_json: &[u8], contents_json: Option<&[u8]>) -> Result<Vec<u8>, IndexError> {
    let compressed = contents_json.map(compress).transpose()?;
    assemble(0, manifest_json, compressed.as_deref())
}

/// The value for `manifest`, in the compact form, and, when kept, its contents (JSON, compressed here).
pub fn encode_manifest(
    manifest: &Manifest,
    contents_json: Option<&[u8]>,
) -> Result<Vec<u8>, IndexError> {
    let compressed = contents_json.map(compress_contents).transpose()?;
    let (flags, compact) = compact_manifest(manifest)?;
    let flags = flags | if compressed.is_some() { DICTIONARY } else { 0 };
    assemble(flags, &compact, compressed.as_deref())
}

fn assemble(flags: u8, manifest: &[u8], compressed: Option<&[u8]>) -> Result<Vec<u8>, IndexError> {
    let len = u32::try_from(manifest.len()).map_err(|_| {
        IndexError::Encode(<serde_json::Error as serde::ser::Error>::custom(
            "manifest larger than 4 GiB",
        ))
    })?;
    let mut out = Vec::with_capacity(5 + manifest.len() + compressed.map_or(0, <[u8]>::len));
    out.push(flags | if compressed.is_some() { CONTENTS } else { 0 });
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(manifest);
    if let Some(c) = compressed {
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// The compact form of a manifest ([module doc](self)) and the flags it needs.
fn compact_manifest(manifest: &Manifest) -> Result<(u8, Vec<u8>), IndexError> {
    let mut flags = COMPACT;
    let mut out = Vec::with_capacity(64);
    let time = manifest.timestamp.to_string();
    out.push(
        u8::try_from(time.len())
            .map_err(|_| encode_error(std::io::Error::other("timestamp too long")))?,
    );
    out.extend_from_slice(time.as_bytes());
    let hash = &manifest.sha256_hash;
    let raw = (hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| hex::decode(hash).ok())
        .flatten();
    match raw {
        Some(raw) => out.extend_from_slice(&raw),
        None => {
            flags |= HASH_TEXT;
            let len = u8::try_from(hash.len())
                .map_err(|_| encode_error(std::io::Error::other("hash longer than 255 bytes")))?;
            out.push(len);
            out.extend_from_slice(hash.as_bytes());
        }
    }
    let koi_context = manifest.extra.len() == 1
        && manifest.extra.get("@context").and_then(|v| v.as_str()) == Some(MANIFEST_CONTEXT);
    if koi_context {
        flags |= KOI_CONTEXT;
    } else if !manifest.extra.is_empty() {
        serde_json::to_writer(&mut out, &manifest.extra)?;
    }
    Ok((flags, out))
}

/// A manifest from its compact form, with the RID from the key.
fn expand_manifest(key: &[u8], flags: u8, bytes: &[u8]) -> Result<Manifest, IndexError> {
    let cut = || corrupt(key, "compact manifest cut short");
    let rid = std::str::from_utf8(key)
        .ok()
        .and_then(|text| Rid::parse(text).ok())
        .ok_or_else(|| corrupt(key, "the key is not a RID"))?;
    let (&time_len, rest) = bytes.split_first().ok_or_else(cut)?;
    let time = rest.get(..time_len as usize).ok_or_else(cut)?;
    let timestamp = std::str::from_utf8(time)
        .ok()
        .and_then(|text| Timestamp::parse(text).ok())
        .ok_or_else(|| corrupt(key, "the manifest's timestamp is not RFC 3339"))?;
    let rest = &rest[time_len as usize..];
    let (sha256_hash, rest) = if flags & HASH_TEXT != 0 {
        let (&len, rest) = rest.split_first().ok_or_else(cut)?;
        let text = rest.get(..len as usize).ok_or_else(cut)?;
        (
            String::from_utf8_lossy(text).into_owned(),
            &rest[len as usize..],
        )
    } else {
        (hex::encode(rest.get(..32).ok_or_else(cut)?), &rest[32..])
    };
    let extra = if flags & KOI_CONTEXT != 0 {
        let mut extra = serde_json::Map::new();
        extra.insert("@context".into(), MANIFEST_CONTEXT.into());
        extra
    } else if rest.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_slice(rest)
            .map_err(|e| corrupt(key, format!("cannot decode the manifest's other keys: {e}")))?
    };
    Ok(Manifest {
        rid,
        timestamp,
        sha256_hash,
        extra,
    })
}

fn corrupt(key: &[u8], problem: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        tree: TREE,
        key: key.escape_ascii().to_string(),
        problem: problem.into(),
    }
}

/// The flags, the manifest and the compressed contents (if any) of a value.
#[allow(clippy::type_complexity)]
fn split<'a>(key: &[u8], value: &'a [u8]) -> Result<(u8, &'a [u8], Option<&'a [u8]>), IndexError> {
    let (&flags, rest) = value
        .split_first()
        .ok_or_else(|| corrupt(key, "empty value"))?;
    let len_bytes: [u8; 4] = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(key, "value shorter than its header"))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let manifest = rest
        .get(4..4 + len)
        .ok_or_else(|| corrupt(key, "manifest cut short"))?;
    let contents = (flags & CONTENTS != 0).then(|| &rest[4 + len..]);
    Ok((flags, manifest, contents))
}

/// A manifest as stored, in either form.
fn read_manifest(key: &[u8], flags: u8, bytes: &[u8]) -> Result<Manifest, IndexError> {
    if flags & COMPACT != 0 {
        expand_manifest(key, flags, bytes)
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| corrupt(key, format!("cannot decode the manifest: {e}")))
    }
}

/// The manifest of a held value (no decompression).
pub fn manifest(key: &[u8], value: &[u8]) -> Result<Manifest, IndexError> {
    let (flags, bytes, _) = split(key, value)?;
    read_manifest(key, flags, bytes)
}

/// The value with its contents dropped (a tombstone), or `None` if it has none already.
pub fn without_contents(key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
    let (flags, manifest, contents) = split(key, value)?;
    match contents {
        None => Ok(None),
        Some(_) => assemble(flags & !(CONTENTS | DICTIONARY), manifest, None).map(Some),
    }
}

/// Whether the value holds contents.
pub fn has_contents(key: &[u8], value: &[u8]) -> Result<bool, IndexError> {
    Ok(split(key, value)?.2.is_some())
}

/// Manifest and contents (decompressed) of a held value.
pub fn decode(key: &[u8], value: &[u8]) -> Result<(Manifest, Option<Contents>), IndexError> {
    let (flags, bytes, compressed) = split(key, value)?;
    let manifest = read_manifest(key, flags, bytes)?;
    let contents = match compressed {
        None => None,
        Some(c) => {
            let json = if flags & DICTIONARY != 0 {
                decompress_contents(c)
            } else {
                crate::compression::decompress(c)
            }
            .map_err(|e| corrupt(key, format!("cannot decompress the contents: {e}")))?;
            Some(
                serde_json::from_slice(&json)
                    .map_err(|e| corrupt(key, format!("cannot decode the contents: {e}")))?,
            )
        }
    };
    Ok((manifest, contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(timestamp: &str, hash: &str, extra: serde_json::Value) -> Manifest {
        Manifest {
            rid: Rid::parse("orn:github.event:a/b:1").unwrap(),
            timestamp: Timestamp::parse(timestamp).unwrap(),
            sha256_hash: hash.to_owned(),
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn compact_manifests_read_back_as_their_json_would() {
        let key = b"orn:github.event:a/b:1";
        let hex = "0123456789abcdef".repeat(4);
        let contents = serde_json::to_vec(&serde_json::json!({"x": 1})).unwrap();
        for m in [
            manifest_with(
                "2026-11-24T12:00:00Z",
                &hex,
                serde_json::json!({"@context": MANIFEST_CONTEXT}),
            ),
            manifest_with(
                "2026-11-24T12:00:00.123456+05:30",
                &hex,
                serde_json::json!({}),
            ),
            manifest_with(
                "2026-11-24T12:00:00Z",
                "NOT-HEX",
                serde_json::json!({"@context": "other", "z": [1, 2]}),
            ),
            manifest_with(
                "2026-11-24T12:00:00Z",
                &hex.to_uppercase(),
                serde_json::json!({}),
            ),
        ] {
            // What the JSON form would give back: the reference.
            let json: Manifest = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
            for kept in [None, Some(contents.as_slice())] {
                let value = encode_manifest(&m, kept).unwrap();
                assert_eq!(manifest(key, &value).unwrap(), json);
                let (read, c) = decode(key, &value).unwrap();
                assert_eq!(read, json);
                assert_eq!(c.is_some(), kept.is_some());
                let tomb = without_contents(key, &value)
                    .unwrap()
                    .unwrap_or(value.clone());
                assert_eq!(manifest(key, &tomb).unwrap(), json);
                assert!(!has_contents(key, &tomb).unwrap());
                // Cut short anywhere in the manifest: an error, never a panic.
                let (_, bytes, _) = split(key, &value).unwrap();
                for cut in 0..bytes.len() {
                    let short = assemble(value[0] & !CONTENTS, &bytes[..cut], None).unwrap();
                    let _ = manifest(key, &short);
                }
            }
        }
        let koi = encode_manifest(
            &manifest_with(
                "2026-11-24T12:00:00Z",
                &hex,
                serde_json::json!({"@context": MANIFEST_CONTEXT}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(koi.len(), 5 + 1 + 20 + 32, "a koi-net manifest in 58 bytes");
    }

    #[test]
    fn contents_are_compressed_with_the_dictionary_and_read_back() {
        let key = b"orn:github.event:a/b:1";
        let m = manifest_with(
            "2026-11-24T12:00:00Z",
            &"ab".repeat(32),
            serde_json::json!({}),
        );
        let webhook = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/webhooks/push.json"
        ))
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&webhook).unwrap();
        let contents = serde_json::to_vec(&doc["contents"]).unwrap();
        let with = encode_manifest(&m, Some(&contents)).unwrap();
        assert_ne!(with[0] & DICTIONARY, 0);
        let plain = encode(&serde_json::to_vec(&m).unwrap(), Some(&contents)).unwrap();
        assert_eq!(plain[0] & DICTIONARY, 0);
        assert_eq!(decode(key, &with).unwrap(), decode(key, &plain).unwrap());
        let (_, _, with_c) = split(key, &with).unwrap();
        let (_, _, plain_c) = split(key, &plain).unwrap();
        assert!(
            with_c.unwrap().len() < plain_c.unwrap().len(),
            "the dictionary makes a webhook smaller: {} against {}",
            with_c.unwrap().len(),
            plain_c.unwrap().len()
        );
        // A tombstone drops the contents and the flag with them.
        let tomb = without_contents(key, &with).unwrap().unwrap();
        assert_eq!(tomb[0] & (CONTENTS | DICTIONARY), 0);
        assert_eq!(decode(key, &tomb).unwrap().1, None);
        // Contents that claim the dictionary but are not a frame of it are an error, not a panic.
        let mut bad = with.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        bad.truncate(bad.len() - 3);
        assert!(decode(key, &bad).is_err());
    }

    #[test]
    fn round_trips_with_and_without_contents() {
        let manifest_json = br#"{"rid":"orn:github.event:a/b:1","timestamp":"2026-11-24T12:00:00Z","sha256_hash":"00"}"#;
        let contents = serde_json::to_vec(&serde_json::json!({"x": "y".repeat(1000)})).unwrap();
        let held = encode(manifest_json, Some(&contents)).unwrap();
        assert!(held.len() < contents.len(), "compressed");
        let (m, c) = decode(b"k", &held).unwrap();
        assert_eq!(m.sha256_hash, "00");
        assert_eq!(c.unwrap()["x"], "y".repeat(1000));
        assert!(has_contents(b"k", &held).unwrap());
        let tomb = without_contents(b"k", &held).unwrap().unwrap();
        assert_eq!(decode(b"k", &tomb).unwrap().1, None);
        assert_eq!(manifest(b"k", &tomb).unwrap().sha256_hash, "00");
        assert!(without_contents(b"k", &tomb).unwrap().is_none());
        assert!(matches!(
            decode(b"k", &[1, 0]),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
