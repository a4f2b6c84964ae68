//! `export` and `import`: the index as NDJSON ([`crate::index::export`]).
//!
//! `export` asks the running daemon (`GET /export`, one consistent read while it keeps indexing), or reads the
//! stopped store itself. The file is written beside its final name and renamed only once complete, so an
//! interrupted export never leaves a truncated backup under that name.
//!
//! `import` loads into a **stopped** store (created if the data dir has none). A file is checked whole first
//! (every line parses, every hash matches its contents), so a bad file changes nothing; stdin is checked line by
//! line as it is loaded.

use std::io::{BufRead, BufReader, IsTerminal as _, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};

use super::{
    error_chain, Endpoint, LocalStore, QueryCommand, Source, StoreAnswers, REQUEST_TIMEOUT,
};
use crate::index::export::{self, Cursor, Header, Line};
use crate::index::{ApplyOutcome, Index};

/// Lines per import transaction (and per export step when reading the store).
const STEP: usize = 256;

/// Where the export goes: stdout, or a temporary file renamed at the end.
enum Sink {
    Stdout(std::io::Stdout),
    File {
        file: std::io::BufWriter<std::fs::File>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

impl Sink {
    fn open(out: &str) -> anyhow::Result<Sink> {
        if out == "-" {
            return Ok(Sink::Stdout(std::io::stdout()));
        }
        let path = PathBuf::from(out);
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("--out {out} is not a file name"))?;
        let tmp = path.with_file_name(format!(".{}.partial", name.to_string_lossy()));
        // 0600 whatever the umask: an export is the whole index. A stale partial file keeps its old mode when
        // reopened, so the mode is set again explicitly.
        let file = {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private (mode 0600)", tmp.display()))?;
            file
        };
        Ok(Sink::File {
            file: std::io::BufWriter::new(file),
            tmp,
            path,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(out) => out.lock().write_all(bytes).context("writing to stdout"),
            Sink::File { file, tmp, .. } => file
                .write_all(bytes)
                .with_context(|| format!("writing {}", tmp.display())),
        }
    }

    /// Flushes, syncs and renames the file into place.
    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Stdout(out) => out.lock().flush().context("writing to stdout"),
            Sink::File { file, tmp, path } => {
                let file = file
                    .into_inner()
                    .map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
                file.sync_all()
                    .with_context(|| format!("syncing {}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
            }
        }
    }

    /// Removes the partial file after a failure.
    fn abandon(self) {
        if let Sink::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// `export --out FILE|-`.
pub(super) async fn export(
    cmd: &QueryCommand,
    local: &LocalStore,
    api: &Endpoint,
    out: &str,
    verbose: bool,
) -> anyhow::Result<()> {
    let source = Source::connect(local, api, cmd, verbose).await?;
    let mut sink = Sink::open(out)?;
    let written = match &source {
        Source::Api(_) => export_from_api(api, &mut sink).await,
        Source::Store(store) => export_from_store(&store.index, &mut sink),
    };
    match written {
        Ok((header, lines)) => {
            sink.finish()?;
            let place = if out == "-" { "stdout" } else { out };
            eprintln!(
                "exported {} lines to {place}: the header, then the store as of {} ({} events, {} repositories)",
                lines,
                header.exported_at,
                header.events,
                header.repositories
            );
            Ok(())
        }
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

fn parse_header(line: &[u8]) -> anyhow::Result<Header> {
    let header: Header = serde_json::from_slice(line)
        .map_err(|e| anyhow!("the first line is not an export header: {e}"))?;
    if header.format != export::FORMAT {
        bail!(
            "the first line's format is `{}`, not `{}`: this is not a koi-github-indexer export",
            header.format,
            export::FORMAT
        );
    }
    if header.format_version > export::FORMAT_VERSION {
        bail!(
            "the export has format version {}, this koi-github-indexer reads up to {}: import it with the newer \
             version that wrote it",
            header.format_version,
            export::FORMAT_VERSION
        );
    }
    Ok(header)
}

/// Streams `GET /export` into `sink`; returns the header and the number of lines.
async fn export_from_api(api: &Endpoint, sink: &mut Sink) -> anyhow::Result<(Header, u64)> {
    // No overall timeout: a large export takes as long as it takes. A stalled daemon is caught by its own
    // idle timeout.
    let client = api.client(None)?;
    let url = api.url("/export");
    let mut response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = tokio::time::timeout(REQUEST_TIMEOUT, response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or(text);
        bail!("{message} (HTTP {status} from {url})");
    }
    let mut first_line = Vec::new();
    let mut header = None;
    let mut lines = 0u64;
    let mut last = b'\n';
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url} (the export stopped part-way)"))?
    {
        if header.is_none() {
            match chunk.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    first_line.extend_from_slice(&chunk[..end]);
                    header = Some(parse_header(&first_line)?);
                }
                None => first_line.extend_from_slice(&chunk),
            }
        }
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        last = chunk.last().copied().unwrap_or(last);
        sink.write(&chunk)?;
    }
    if last != b'\n' {
        bail!("the export from {url} ended part-way through a line");
    }
    let header = header.ok_or_else(|| anyhow!("{url} answered with no header line"))?;
    Ok((header, lines))
}

/// Writes the stopped store into `sink`; returns the header and the number of lines.
fn export_from_store(index: &Index, sink: &mut Sink) -> anyhow::Result<(Header, u64)> {
    let (header, point) = index.export_start(None)?;
    let mut buffer = serde_json::to_vec(&header)?;
    buffer.push(b'\n');
    sink.write(&buffer)?;
    let mut lines = 1u64;
    let mut cursor = Cursor::Manual(Vec::new());
    while cursor != Cursor::Done {
        let (page, next) = index.export_page(cursor, point, STEP)?;
        buffer.clear();
        for line in &page {
            serde_json::to_writer(&mut buffer, line)?;
            buffer.push(b'\n');
        }
        sink.write(&buffer)?;
        lines += page.len() as u64;
        cursor = next;
    }
    buffer.clear();
    serde_json::to_writer(&mut buffer, &Line::End { lines: lines - 1 })?;
    buffer.push(b'\n');
    sink.write(&buffer)?;
    Ok((header, lines + 1))
}

/// What an import did.
#[derive(Debug, Default)]
struct Tally {
    lines: u64,
    events: u64,
    new: u64,
    updated: u64,
    unchanged: u64,
    stale: u64,
    skipped: u64,
    first_skip: Option<String>,
}

impl Tally {
    fn count(&mut self, outcomes: &[ApplyOutcome]) {
        for outcome in outcomes {
            match outcome {
                ApplyOutcome::Indexed { new: true } => self.new += 1,
                ApplyOutcome::Indexed { new: false } => self.updated += 1,
                ApplyOutcome::Unchanged => self.unchanged += 1,
                ApplyOutcome::Stale => self.stale += 1,
                ApplyOutcome::Ignored | ApplyOutcome::Filtered => self.skipped += 1,
                ApplyOutcome::BadRid(why) | ApplyOutcome::Invalid(why) => {
                    self.skipped += 1;
                    self.first_skip.get_or_insert_with(|| why.clone());
                }
            }
        }
    }
}

fn open_input(input: &str) -> anyhow::Result<Box<dyn BufRead>> {
    if input == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(input).with_context(|| format!("cannot open {input}"))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
}

/// Parses and checks one line after the header.
fn parse_line(number: u64, text: &str) -> anyhow::Result<Line> {
    export::parse_line(text).map_err(|e| anyhow!("line {number}: {e}"))
}

/// Reads the lines of `input` after its header, calling `batch` with up to [`STEP`] at a time.
fn read_lines(
    input: &str,
    mut batch: impl FnMut(&Header, &[Line], u64) -> anyhow::Result<()>,
) -> anyhow::Result<Header> {
    let mut reader = open_input(input)?;
    let mut text = String::new();
    reader
        .read_line(&mut text)
        .with_context(|| format!("reading {input}"))?;
    let header = parse_header(text.trim_end().as_bytes()).with_context(|| input.to_owned())?;
    let mut lines = Vec::with_capacity(STEP);
    let mut number = 1u64;
    let mut counted = 0u64;
    let mut ended = false;
    loop {
        text.clear();
        let read = reader
            .by_ref()
            .read_line(&mut text)
            .with_context(|| format!("reading {input}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if text.trim().is_empty() {
            continue;
        }
        if ended {
            bail!("{input}: line {number} follows the end line: the file is damaged");
        }
        match parse_line(number, text.trim_end()).with_context(|| input.to_owned())? {
            Line::End { lines: said } => {
                if said != counted {
                    bail!(
                        "{input}: the end line says {said} lines came before it, but {counted} did: the file is damaged"
                    );
                }
                ended = true;
            }
            line => {
                counted += 1;
                lines.push(line);
            }
        }
        if lines.len() >= STEP {
            batch(&header, &lines, number)?;
            lines.clear();
        }
    }
    batch(&header, &lines, number)?;
    if !ended {
        bail!(
            "{input} ends without its end line after line {number}: the export was cut short. Export again \
             (what was read so far is loaded only when reading stdin, and loading it again is harmless)"
        );
    }
    Ok(header)
}

/// `[#########...........]  45%  4,500 of 10,000 events`: one terminal line, redrawn in place.
fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 30;
    let total = total.max(done).max(1);
    let filled = done * WIDTH / total;
    format!(
        "[{}{}] {:>3}%  {done} of {total} events",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        done * 100 / total
    )
}

/// `import --in FILE|-`.
pub(super) async fn import(local: &LocalStore, input: &str, verbose: bool) -> anyhow::Result<()> {
    // A file is checked whole before anything is written, or even created; stdin cannot be read twice.
    if input != "-" {
        read_lines(input, |_, _, _| Ok(()))?;
    }
    // Into a store, never through a daemon: any data dir but a running daemon's own (whose lock says so).
    let store = StoreAnswers::open(local).map_err(|e| {
        match e.downcast_ref::<crate::storage::StorageError>() {
            Some(crate::storage::StorageError::Locked { path }) => anyhow!(
                "the store at {} is in use (a running koi-github-indexer?): `import` loads into a stopped store. \
                 Stop the daemon (e.g. `systemctl stop koi-github-indexer`), import, then start it again; or import \
                 into another --data-dir",
                path.display()
            ),
            _ => e,
        }
    })?;
    if verbose {
        eprintln!("importing into the store at {}", local.data_dir.display());
    }
    let index = &store.index;
    let progress = std::io::stderr().is_terminal();
    let mut tally = Tally::default();
    let header = read_lines(input, |header, lines, number| {
        tally.lines = number;
        tally.events += lines.iter().filter(|l| crate::api::is_event(l)).count() as u64;
        let outcomes = index
            .import_lines(lines)
            .map_err(|e| anyhow!("line {number} or before: {e}"))?;
        tally.count(&outcomes);
        if progress {
            eprint!("\r{}", progress_bar(tally.events, header.events));
        }
        Ok(())
    })
    .map_err(|e| anyhow!("{}", error_chain(e.as_ref())))?;
    if progress {
        eprintln!();
    }
    index.flush_async().await.context("flushing the store")?;
    let mut text = format!(
        "imported {} lines from {input} (exported {}, {} events then): {} events; {} bundles new, {} updated, {} \
         already held, {} older than held",
        tally.lines,
        header.exported_at,
        header.events,
        tally.events,
        tally.new,
        tally.updated,
        tally.unchanged,
        tally.stale
    );
    if tally.skipped > 0 {
        text.push_str(&format!(
            ", {} skipped ({})",
            tally.skipped,
            tally
                .first_skip
                .unwrap_or_else(|| "not an indexed type".into())
        ));
    }
    println!("{text}");
    Ok(())
}
