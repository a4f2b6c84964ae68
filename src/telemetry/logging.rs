//! Log set-up: `tracing-subscriber` on stderr (journald captures it under systemd), in `text` or `json`, at the
//! configured `[log] level`, which `RUST_LOG` overrides when set.
//!
//! A plain level applies in full to this crate's own targets (`koi_github_indexer::…`); other crates (hyper,
//! reqwest, sled, warp) are capped at `info`, so `level = "debug"` shows each poll without drowning it in HTTP
//! internals. `RUST_LOG` is taken verbatim, for when you do want those internals.

use std::io::IsTerminal;

use serde::Deserialize;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use super::TelemetryError;

/// The tracing target prefix of everything this crate logs.
pub const CRATE_TARGET: &str = "koi_github_indexer";

/// The levels `[log] level` accepts, least to most verbose.
pub const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Log line format, `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable `key=value` lines, for terminals and journald.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber: stderr, `format`, filtered by `RUST_LOG` if set, else by `level`.
///
/// Call once, early in `main`. A second call returns [`TelemetryError::AlreadyInitialised`] rather than panicking.
/// ANSI colours are used only when stderr is a terminal; under journald (`JOURNAL_STREAM` set) text lines carry no
/// timestamp, since the journal stamps each line itself.
pub fn init_logging(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = build_filter(level, rust_log.as_deref())?;
    let ansi = std::io::stderr().is_terminal();
    let timestamps = std::env::var_os("JOURNAL_STREAM").is_none();
    let subscriber = build_subscriber(filter, format, std::io::stderr, ansi, timestamps);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}

/// The filter directives for `level`, or `rust_log` verbatim when it is set and not blank.
///
/// `level` is one of [`LEVELS`] (any case), or a directive list containing `=` or `,`
/// (e.g. `info,koi_github_indexer::node=debug`).
pub fn filter_directives(level: &str, rust_log: Option<&str>) -> Result<String, TelemetryError> {
    if let Some(rust_log) = rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        return match EnvFilter::try_new(rust_log) {
            Ok(_) => Ok(rust_log.to_owned()),
            Err(e) => Err(TelemetryError::InvalidRustLog {
                value: rust_log.to_owned(),
                message: e.to_string(),
            }),
        };
    }
    let trimmed = level.trim();
    let invalid = || TelemetryError::InvalidLevel {
        value: level.to_owned(),
    };
    if trimmed.contains('=') || trimmed.contains(',') {
        return match EnvFilter::try_new(trimmed) {
            Ok(_) => Ok(trimmed.to_owned()),
            Err(_) => Err(invalid()),
        };
    }
    let lower = trimmed.to_ascii_lowercase();
    if !LEVELS.contains(&lower.as_str()) {
        return Err(invalid());
    }
    let others = if lower == "debug" || lower == "trace" {
        "info"
    } else {
        lower.as_str()
    };
    Ok(format!("{others},{CRATE_TARGET}={lower}"))
}

/// [`filter_directives`] parsed into an [`EnvFilter`].
pub fn build_filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let directives = filter_directives(level, rust_log)?;
    // Validated by filter_directives; parse again to build the filter itself.
    EnvFilter::try_new(&directives).map_err(|_| TelemetryError::InvalidLevel {
        value: level.to_owned(),
    })
}

/// A subscriber writing to `writer`, not installed. [`init_logging`] installs one on stderr; tests use this with a
/// buffer and `tracing::subscriber::with_default`, so they never touch global state.
pub fn build_subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    writer: W,
    ansi: bool,
    timestamps: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match (format, timestamps) {
        (LogFormat::Text, true) => Box::new(builder.finish()),
        (LogFormat::Text, false) => Box::new(builder.without_time().finish()),
        // JSON lines keep their timestamp: shippers read them apart from the journal.
        (LogFormat::Json, _) => Box::new(builder.json().finish()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` into a shared buffer, to read back what a test logged.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    /// Runs `f` with a local subscriber at `level` in `format` and returns what it logged.
    pub(crate) fn capture(level: &str, format: LogFormat, f: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let filter = build_filter(level, None).expect("valid level");
        let subscriber = build_subscriber(filter, format, buffer.clone(), false, false);
        tracing::subscriber::with_default(subscriber, f);
        buffer.text()
    }

    #[test]
    fn plain_levels_apply_to_this_crate_and_cap_the_others_at_info() {
        assert_eq!(
            filter_directives("debug", None).unwrap(),
            "info,koi_github_indexer=debug"
        );
        assert_eq!(
            filter_directives(" WARN ", None).unwrap(),
            "warn,koi_github_indexer=warn"
        );
        assert_eq!(
            filter_directives("info", None).unwrap(),
            "info,koi_github_indexer=info"
        );
    }

    #[test]
    fn rust_log_overrides_the_level_verbatim() {
        assert_eq!(
            filter_directives("info", Some("hyper=trace")).unwrap(),
            "hyper=trace"
        );
        // Blank RUST_LOG counts as unset.
        assert_eq!(
            filter_directives("warn", Some("  ")).unwrap(),
            "warn,koi_github_indexer=warn"
        );
    }

    #[test]
    fn a_bad_level_names_the_value_and_the_valid_ones() {
        let message = filter_directives("verbose", None).unwrap_err().to_string();
        assert!(message.contains("`verbose`"), "{message}");
        assert!(message.contains("log.level"), "{message}");
        for level in LEVELS {
            assert!(message.contains(level), "{message} lacks {level}");
        }
        let message = filter_directives("info,x=loud", None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("`info,x=loud`"), "{message}");
    }

    #[test]
    fn a_bad_rust_log_is_named() {
        let message = filter_directives("info", Some("x=loud"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("RUST_LOG `x=loud`"), "{message}");
    }

    #[test]
    fn directive_lists_are_accepted_as_level() {
        assert_eq!(
            filter_directives("warn,koi_github_indexer::node=debug", None).unwrap(),
            "warn,koi_github_indexer::node=debug"
        );
    }

    #[test]
    fn log_format_deserialises_from_lowercase_names() {
        #[derive(Deserialize)]
        struct Log {
            format: LogFormat,
        }
        let json: Log = serde_json::from_str(r#"{"format":"json"}"#).unwrap();
        assert_eq!(json.format, LogFormat::Json);
        let text: Log = serde_json::from_str(r#"{"format":"text"}"#).unwrap();
        assert_eq!(text.format, LogFormat::Text);
        assert!(serde_json::from_str::<Log>(r#"{"format":"xml"}"#).is_err());
    }

    #[test]
    fn json_format_writes_one_object_per_line_and_the_level_filters() {
        let out = capture("info", LogFormat::Json, || {
            tracing::info!(target: "koi_github_indexer::test", neighbour = "n1", "hello");
            tracing::debug!(target: "koi_github_indexer::test", "hidden at info");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["neighbour"], "n1");
        assert_eq!(line["fields"]["message"], "hello");
    }

    #[test]
    fn other_crates_are_capped_at_info_when_we_debug() {
        let out = capture("debug", LogFormat::Text, || {
            tracing::debug!(target: "koi_github_indexer::test", "ours");
            tracing::debug!(target: "hyper::proto", "theirs");
        });
        assert!(out.contains("ours"), "{out}");
        assert!(!out.contains("theirs"), "{out}");
    }
}
