//! The two JSON encodings the protocol depends on, byte for byte.
//!
//! * [`to_wire_json`]: compact JSON as koi-net's Pydantic models re-serialise a payload before checking its
//!   signature (`model_dump_json`): no spaces, non-ASCII as raw UTF-8, and floats written the way pydantic-core
//!   writes them (`1e+21`, `1e-7`, `0.00001`, `1.0`) — which is neither serde_json's style (`1e21`) nor Python's
//!   `repr` (`1e-07`, `1e-05`). Any difference makes the Python side compute other bytes and reject our signature.
//! * [`content_hash`]: RFC 8785 canonical JSON (JCS) of bundle contents, then SHA-256 — the `sha256_hash` of a
//!   manifest. The JCS crate canonicalises numbers as IEEE doubles, as rid-lib does.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;
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
    if !value.is_finite() {
        // JSON has no NaN/Infinity; serde_json writes `null` for them, and so do we.
        return "null".to_owned();
    }
    // Rust's `{:e}` gives the shortest round-trip digits as `d.ddddde<exp>`.
    let sci = format!("{value:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-5..16).contains(&exp) {
        let point = exp + 1; // position of the decimal point within `digits`
        let (int_part, frac_part) = if point <= 0 {
            (
                "0".to_owned(),
                format!("{}{}", "0".repeat((-point) as usize), digits),
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
        format!("{sign}{mantissa}e{exp_sign}{}", exp.abs())
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

/// RFC 8785 canonical JSON of `contents` (any JSON value, or a map of them: no copy is made here).
pub fn canonical_json<T: Serialize + ?Sized>(contents: &T) -> Result<String, serde_json::Error> {
    serde_jcs::to_string(contents)
}

/// `sha256_hash` of bundle contents: hex SHA-256 of their canonical JSON.
pub fn content_hash<T: Serialize + ?Sized>(contents: &T) -> Result<String, serde_json::Error> {
    let canonical = canonical_json(contents)?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

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
