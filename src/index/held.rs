//! How a bundle is held in `index.bundles`: its manifest and its contents as **one value**, the contents
//! compressed with zstd.
//!
//! ```text
//! [flags: u8][manifest length: u32 BE][manifest JSON][zstd(contents JSON), when flags & CONTENTS]
//! ```
//!
//! The manifest comes first and uncompressed, so the dedupe check (which reads only the manifest) never
//! decompresses anything. A value without contents is a tombstone (retention pruned the event) or a store kept with
//! `index.keep_contents = false`.

use super::error::IndexError;
use crate::protocol::{Contents, Manifest};

/// Tree name.
pub const TREE: &str = "index.bundles";
/// `flags` bit: contents follow the manifest.
const CONTENTS: u8 = 1;
/// zstd level: 3 is zstd's default, a good ratio at a few hundred MB/s on this machine's core.
const LEVEL: i32 = 3;

use zstd::zstd_safe::{CCtx, DCtx};

thread_local! {
    /// One compression context per thread: creating one costs about as much as compressing a small bundle.
    static COMPRESSOR: std::cell::RefCell<CCtx<'static>> = std::cell::RefCell::new(CCtx::create());
    /// Likewise for decompression.
    static DECOMPRESSOR: std::cell::RefCell<DCtx<'static>> = std::cell::RefCell::new(DCtx::create());
}

/// `ZSTD_getFrameContentSize` answers for "unknown" and "error" (`ZSTD_CONTENTSIZE_UNKNOWN` / `_ERROR`).
const CONTENT_SIZE_UNKNOWN: u64 = u64::MAX;
const CONTENT_SIZE_ERROR: u64 = u64::MAX - 1;
/// A frame claiming more than this is not decompressed in one go (a corrupt header must not allocate gigabytes).
const MAX_ONE_SHOT: u64 = 256 * 1024 * 1024;

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

/// A zstd frame decompressed, with this thread's context.
pub fn decompress(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(frame);
    if size == CONTENT_SIZE_UNKNOWN || size == CONTENT_SIZE_ERROR || size > MAX_ONE_SHOT {
        // No usable size in the frame header (not written by [`compress`]): stream it.
        return zstd::stream::decode_all(frame);
    }
    let mut out = Vec::with_capacity(size as usize);
    DECOMPRESSOR
        .with(|dctx| dctx.borrow_mut().decompress(&mut out, frame))
        .map_err(zstd_error)?;
    Ok(out)
}

/// The value for a manifest (JSON) and, when kept, its contents (JSON, compressed here).
pub fn encode(manifest_json: &[u8], contents_json: Option<&[u8]>) -> Result<Vec<u8>, IndexError> {
    let compressed = contents_json.map(compress).transpose()?;
    let len = u32::try_from(manifest_json.len()).map_err(|_| {
        IndexError::Encode(<serde_json::Error as serde::ser::Error>::custom(
            "manifest larger than 4 GiB",
        ))
    })?;
    let mut out =
        Vec::with_capacity(5 + manifest_json.len() + compressed.as_ref().map_or(0, Vec::len));
    out.push(if compressed.is_some() { CONTENTS } else { 0 });
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(manifest_json);
    if let Some(c) = compressed {
        out.extend_from_slice(&c);
    }
    Ok(out)
}

fn corrupt(key: &[u8], problem: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        tree: TREE,
        key: key.escape_ascii().to_string(),
        problem: problem.into(),
    }
}

/// The manifest JSON and the compressed contents (if any) of a value.
fn split<'a>(key: &[u8], value: &'a [u8]) -> Result<(&'a [u8], Option<&'a [u8]>), IndexError> {
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
    Ok((manifest, contents))
}

/// The manifest of a held value (no decompression).
pub fn manifest(key: &[u8], value: &[u8]) -> Result<Manifest, IndexError> {
    let (json, _) = split(key, value)?;
    serde_json::from_slice(json)
        .map_err(|e| corrupt(key, format!("cannot decode the manifest: {e}")))
}

/// The value with its contents dropped (a tombstone), or `None` if it has none already.
pub fn without_contents(key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
    let (json, contents) = split(key, value)?;
    match contents {
        None => Ok(None),
        Some(_) => encode(json, None).map(Some),
    }
}

/// Whether the value holds contents.
pub fn has_contents(key: &[u8], value: &[u8]) -> Result<bool, IndexError> {
    Ok(split(key, value)?.1.is_some())
}

/// Manifest and contents (decompressed) of a held value.
pub fn decode(key: &[u8], value: &[u8]) -> Result<(Manifest, Option<Contents>), IndexError> {
    let (json, compressed) = split(key, value)?;
    let manifest = serde_json::from_slice(json)
        .map_err(|e| corrupt(key, format!("cannot decode the manifest: {e}")))?;
    let contents = match compressed {
        None => None,
        Some(c) => {
            let json = decompress(c)
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
