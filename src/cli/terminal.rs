//! Text from the network made safe for a terminal. Commit messages, logins and summaries come from GitHub by way
//! of peers: an escape sequence in one (`ESC ]0;…BEL` retitles the window, `ESC [2J` clears it, others have
//! done worse) must be shown, not obeyed. Tables and `event-details` pass every such field through [`visible`];
//! `--json` output stays exact JSON.

use std::borrow::Cow;

/// `text` with every control character shown as an escape (`\u{1b}`, `\r`, `\n`, `\t`, and the C1 controls such
/// as `\u{9b}`, which some terminals read as `ESC [`), and the Unicode controls that reorder text on screen
/// (bidirectional overrides and isolates) shown as `\u{…}` too.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// Pretty JSON for a terminal. serde_json already escapes C0 controls inside strings; DEL, the C1 controls and
/// the bidirectional controls it writes as they are, so those become `\uXXXX` escapes, which leave the JSON valid
/// and equal in value.
pub fn visible_json(value: &serde_json::Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if !text.chars().any(|c| c != '\n' && needs_escape(c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(visible("plain text, ünïcode 🚀"), "plain text, ünïcode 🚀");
        assert!(matches!(visible("plain"), Cow::Borrowed(_)));
        assert_eq!(visible("a\u{1b}]0;owned\u{7}b"), "a\\u{1b}]0;owned\\u{7}b");
        assert_eq!(visible("x\u{1b}[2J\r\ny"), "x\\u{1b}[2J\\r\\ny");
        assert_eq!(visible("c1 \u{9b}31m"), "c1 \\u{9b}31m");
        assert_eq!(visible("rtl \u{202e}gnp.exe"), "rtl \\u{202e}gnp.exe");
        assert_eq!(visible("del\u{7f}"), "del\\u{7f}");
    }

    #[test]
    fn json_stays_json_and_equal() {
        let value = serde_json::json!({"m": "a\u{1b}[2J\u{9b}b\u{202e}c\u{7f}", "n": [1, 2]});
        let text = visible_json(&value);
        assert!(
            !text.chars().any(|c| c != '\n' && needs_escape(c)),
            "{text:?}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }
}
