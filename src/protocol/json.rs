//! The two JSON encodings the protocol depends on, byte for byte.
//!
//! * [`to_wire_json`]: compact JSON as koi-net's Pydantic models re-serialise a payload before checking its
//!   signature (`model_dump_json`): no spaces, non-ASCII as raw UTF-8, and floats written the way pydantic-core
//!   writes them (`1e+21`, `1e-7`, `0.00001`, `1.0`) — which is neither serde_json's style (`1e21`) nor Python's
//!   `repr` (`1e-07`, `1e-05`). Any difference makes the Python side compute other bytes and reject our signature.
//! * [`content_hash`]: RFC 8785 canonical JSON (JCS) of bundle contents, then SHA-256 — the `sha256_hash` of a
//!   manifest. Numbers are canonicalised as IEEE doubles, as rid-lib does.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A serde_json formatter writing compact JSON with pydantic-core-style floats.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(pydantic_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

/// A float as pydantic-core's JSON serialiser writes it (measured against pydantic 2 under koi-net 2.1.2): the
/// shortest digits that round-trip; fixed notation with at least one fractional digit when the decimal exponent
/// is in `-5..16`; otherwise `d.ddde±N` with an explicit sign and no zero padding.
pub fn pydantic_float(value: f64) -> String {
    shortest_float(value, -5, 0)
}

/// A float in its shortest round-trip digits: fixed notation (with at least one fractional digit) when the
/// decimal exponent is in `min_fixed_exp..16`, otherwise `d.ddde±N` with the exponent padded to `exp_digits`.
fn shortest_float(value: f64, min_fixed_exp: i32, exp_digits: usize) -> String {
    if !value.is_finite() {
        // JSON has no NaN/Infinity; serde_json writes `null` for them, and so do we.
        return "null".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits as `d.ddddde<exp>`.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if mantissa.starts_with('-') { "-" } else { "" };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if (min_fixed_exp..16).contains(&exp) {
        let point = exp + 1; // position of the decimal point within `digits`
        let (int_part, frac_part) = if point <= 0 {
            (
                "0".to_owned(),
                format!("{}{}", "0".repeat(point.unsigned_abs() as usize), digits),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_owned(),
                digits[point as usize..].to_owned(),
            )
        };
        let frac = if frac_part.is_empty() {
            "0".to_owned()
        } else {
            frac_part
        };
        format!("{sign}{int_part}.{frac}")
    } else {
        let mantissa = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:0exp_digits$}", exp.abs())
    }
}

/// Serialises `value` as compact JSON exactly as koi-net's Pydantic models would.
pub fn to_wire_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut serializer)?;
    Ok(out)
}

/// Writes `text` as a JSON string literal (quotes and escapes) into `out`.
pub fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// RFC 8785 canonical JSON (JCS) of a JSON value, as rid-lib computes it: object keys sorted by their UTF-16 code
/// units, no whitespace, strings escaped as ECMAScript's `JSON.stringify` does (`\"`, `\\`, `\b \f \n \r \t`,
/// other controls as `\u00xx`, everything else as is), and every number as an IEEE double in ECMAScript's shortest
/// form (`ryu-js`; an integer beyond 2^53 loses precision there too).
///
/// Written here over the parsed value rather than with `serde_jcs`: that crate re-parses every key and buffers
/// every value in its own allocation, which made hashing the largest single cost of indexing (about 45 % of the
/// instructions per event, callgrind); this writer makes the same bytes (a property test compares the two on random
/// values, and the vectors of `../shared/koi-net/fixtures/` are checked) in about a quarter of the time.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write::<Rfc8785>(&mut out, value);
    out
}

/// What tells the two hashed encodings apart; [`write`] is the rest, written once (and monomorphised, so the hot
/// RFC 8785 path pays nothing for sharing it).
trait Style {
    fn number(out: &mut Vec<u8>, n: &serde_json::Number);
    fn string(out: &mut Vec<u8>, text: &str);
    fn key_order(a: &str, b: &str) -> std::cmp::Ordering;
}

/// RFC 8785: every number an IEEE double in ECMAScript's form, strings as `JSON.stringify`, keys by UTF-16 units.
struct Rfc8785;

impl Style for Rfc8785 {
    fn number(out: &mut Vec<u8>, n: &serde_json::Number) {
        // serde_json's numbers are finite (i64, u64 or a finite f64): `as_f64` is always `Some`.
        let mut buffer = ryu_js::Buffer::new();
        out.extend_from_slice(buffer.format_finite(n.as_f64().unwrap_or(0.0)).as_bytes());
    }
    fn string(out: &mut Vec<u8>, text: &str) {
        write_canonical_str(out, text)
    }
    fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
        utf16_order(a, b)
    }
}

/// Python's `json.dumps(sort_keys=True, separators=(",", ":"))`: integers kept, floats as `repr`, ASCII-escaped
/// strings, keys by code point.
struct Legacy;

impl Style for Legacy {
    fn number(out: &mut Vec<u8>, n: &serde_json::Number) {
        match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.extend_from_slice(i.to_string().as_bytes()),
            (None, Some(u), _) => out.extend_from_slice(u.to_string().as_bytes()),
            (None, None, Some(f)) => out.extend_from_slice(python_float_repr(f).as_bytes()),
            (None, None, None) => out.extend_from_slice(b"null"),
        }
    }
    fn string(out: &mut Vec<u8>, text: &str) {
        write_legacy_str(out, text)
    }
    fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
        // UTF-8 bytes sort as code points do.
        a.as_bytes().cmp(b.as_bytes())
    }
}

/// A value, compact, in style `S`.
fn write<S: Style>(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => S::number(out, n),
        Value::String(s) => S::string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write::<S>(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map::<S>(out, map),
    }
}

/// An object, keys sorted as style `S` sorts them.
fn write_map<S: Style>(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| S::key_order(a.0, b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        S::string(out, key);
        out.push(b':');
        write::<S>(out, value);
    }
    out.push(b'}');
}

/// JCS orders keys by UTF-16 code units. UTF-8 bytes sort as code points do, and code points sort as UTF-16 code
/// units do except in one place: a character above U+FFFF (two surrogates, 0xD800…) sorts before U+E000…U+FFFF in
/// UTF-16, after them in UTF-8. So the bytes decide, unless the first bytes that differ are the lead bytes of one
/// such pair: 0xEE or 0xEF (U+E000…U+FFFF) against 0xF0…0xF4 (above U+FFFF). Where they differ in a continuation
/// byte, the characters share their lead byte and so their range, where both orders agree. No pass over the keys to
/// find out whether they are ASCII, and no decoding (key sorting was about a tenth of hashing a bundle).
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => {
            let (x, y) = (a[i], b[i]);
            let bmp_high = |byte: u8| byte == 0xEE || byte == 0xEF;
            let supplementary = |byte: u8| byte >= 0xF0;
            if (bmp_high(x) && supplementary(y)) || (supplementary(x) && bmp_high(y)) {
                y.cmp(&x)
            } else {
                x.cmp(&y)
            }
        }
        None => a.len().cmp(&b.len()),
    }
}

fn write_canonical_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `sha256_hash` of bundle contents: hex SHA-256 of their canonical JSON.
pub fn content_hash(contents: &Map<String, Value>) -> String {
    let mut canonical = Vec::with_capacity(4096);
    write_map::<Rfc8785>(&mut canonical, contents);
    hex::encode(Sha256::digest(&canonical))
}

/// The JSON that rid-lib up to 3.2.6 hashed for a manifest's `sha256_hash`: Python's
/// `json.dumps(contents, sort_keys=True, separators=(",", ":"))`. Unlike RFC 8785 (rid-lib 3.2.7 on), it escapes
/// every non-ASCII character as `\uXXXX` (surrogate pairs beyond U+FFFF, lower-case hex), sorts keys by code point,
/// keeps integers as integers and writes floats as Python's `repr` does (`1e-05`, `1.0`, `1e+16`). Bundles made by
/// older nodes (the first generation of the GitHub sensor) carry such hashes; see [`legacy_content_hash`].
pub fn legacy_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    write::<Legacy>(&mut out, value);
    out
}

/// A string as Python's `json.dumps` writes it with `ensure_ascii=True`.
fn write_legacy_str(out: &mut Vec<u8>, text: &str) {
    use std::io::Write as _;
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(c as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push(b'"');
}

/// A float as Python's `repr` writes it: the shortest digits that round-trip; fixed notation, with at least one
/// fractional digit, when the decimal exponent is in `-5 < e < 16`; otherwise `d.ddde±XX` with at least two
/// exponent digits (`1e-05`, `1.5e+16`).
pub fn python_float_repr(value: f64) -> String {
    shortest_float(value, -4, 2)
}

/// `sha256_hash` of bundle contents as rid-lib up to 3.2.6 computed it: hex SHA-256 of [`legacy_json`].
pub fn legacy_content_hash(contents: &Map<String, Value>) -> String {
    let mut legacy = Vec::with_capacity(4096);
    write_map::<Legacy>(&mut legacy, contents);
    hex::encode(Sha256::digest(&legacy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON value: strings with quotes, backslashes, controls, DEL, non-ASCII and characters beyond U+FFFF (keys
    /// too, so that UTF-16 ordering matters); integers of any size; floats of any magnitude.
    fn json_value() -> impl Strategy<Value = Value> {
        let text = || {
            proptest::string::string_regex(
                "[a-zA-Z0-9\"\\\\\u{0}-\u{1f}\u{7f}é€\u{e000}\u{ffff}\u{10000}😀 ]{0,12}",
            )
            .expect("a valid regex")
        };
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The canonical writer makes exactly serde_jcs's bytes (the reference, checked in turn against rid-lib's
        /// vectors by `tests/protocol_vectors.rs`).
        #[test]
        fn canonical_json_is_byte_for_byte_serde_jcs(value in json_value()) {
            let expected = String::from_utf8(serde_jcs::to_vec(&value).unwrap()).unwrap();
            let ours = String::from_utf8(canonical_json(&value)).unwrap();
            prop_assert_eq!(ours, expected);
        }

        /// The byte comparison orders any two strings as their UTF-16 code units do.
        #[test]
        fn key_order_is_utf16_order(
            a in "[a\u{0}\u{7f}\u{80}é€\u{d7ff}\u{e000}\u{ff61}\u{ffff}\u{10000}😀\u{10ffff}]{0,6}",
            b in "[a\u{0}\u{7f}\u{80}é€\u{d7ff}\u{e000}\u{ff61}\u{ffff}\u{10000}😀\u{10ffff}]{0,6}",
        ) {
            prop_assert_eq!(utf16_order(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }
    }

    /// Values where both schemes write the same bytes: ASCII text whose keys sort alike under both orders, and
    /// integers only (RFC 8785 writes every number as a double, the legacy writer keeps integers; below 2^53 they
    /// agree).
    fn ascii_integer_value() -> impl Strategy<Value = Value> {
        let text =
            || proptest::string::string_regex("[a-zA-Z0-9 _.:/-]{0,12}").expect("a valid regex");
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// On ASCII-only, integer-only values the two schemes are one: a legacy hash differs only where text is
        /// not ASCII or a number is a float.
        #[test]
        fn both_schemes_agree_on_ascii_integer_values(value in ascii_integer_value()) {
            prop_assert_eq!(
                String::from_utf8(legacy_json(&value)).unwrap(),
                String::from_utf8(canonical_json(&value)).unwrap()
            );
        }
    }

    /// Vectors computed with rid-lib 3.2.5's own `sha256_hash_json` (`tests/fixtures/legacy-hash-vectors.ndjson`):
    /// non-ASCII and astral text, floats, nested objects, key order, escapes.
    #[test]
    fn legacy_hashes_are_rid_lib_3_2_5s() {
        let vectors = include_str!("../../tests/fixtures/legacy-hash-vectors.ndjson");
        let mut checked = 0;
        for line in vectors.lines().filter(|l| !l.trim().is_empty()) {
            let vector: Value = serde_json::from_str(line).unwrap();
            let name = vector["name"].as_str().unwrap();
            let contents: Value =
                serde_json::from_str(vector["contents_json"].as_str().unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(legacy_json(&contents)).unwrap(),
                vector["legacy_json"].as_str().unwrap(),
                "{name}"
            );
            let map = contents.as_object().unwrap();
            assert_eq!(
                legacy_content_hash(map),
                vector["legacy_sha256"].as_str().unwrap(),
                "{name}"
            );
            checked += 1;
        }
        assert!(checked >= 7);
    }

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        for (value, expected) in [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e100, "1.2345e+100"),
            (5e-324, "5e-324"),
            (123456.789, "123456.789"),
        ] {
            assert_eq!(python_float_repr(value), expected, "{value:e}");
        }
    }

    #[test]
    fn keys_sort_by_utf16_code_units_not_code_points() {
        let value = serde_json::json!({"\u{ff61}": 1, "\u{10000}": 2, "b": 3, "a": 4});
        assert_eq!(
            String::from_utf8(canonical_json(&value)).unwrap(),
            "{\"a\":4,\"b\":3,\"\u{10000}\":2,\"\u{ff61}\":1}"
        );
    }

    #[test]
    fn floats_are_written_as_pydantic_writes_them() {
        // Each pair was printed by `model_dump_json` of pydantic 2 as installed with koi-net 2.1.2.
        for (value, expected) in [
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (0.00001, "0.00001"),
            (0.000012345, "0.000012345"),
            (1e-6, "1e-6"),
            (1.2345e-6, "1.2345e-6"),
            (1e-7, "1e-7"),
            (9999000000000000.0, "9999000000000000.0"),
            (1.2345678901234567e19, "1.2345678901234567e+19"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (123456.789, "123456.789"),
            (0.1, "0.1"),
            (-2.5e-10, "-2.5e-10"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(pydantic_float(value), expected, "{value:e}");
        }
    }

    #[test]
    fn wire_json_keeps_nulls_utf8_and_python_floats() {
        let value = serde_json::json!({"v": 1.5, "n": null, "s": "é", "e": 1e21});
        assert_eq!(
            String::from_utf8(to_wire_json(&value).unwrap()).unwrap(),
            r#"{"v":1.5,"n":null,"s":"é","e":1e+21}"#
        );
    }
}
