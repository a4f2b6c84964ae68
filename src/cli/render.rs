//! Tables and text for a terminal: each fits 80 columns, and every field from the network is shown escaped ([`super::terminal`]).

use super::*;

/// Terminal columns a character takes: 2 for East Asian wide characters and emoji, 0 for combining marks.
pub(super) fn char_width(c: char) -> usize {
    UnicodeWidthChar::width(c).unwrap_or(0)
}

/// The first line of `text` in exactly `width` columns: control characters shown as escapes ([`visible`]), then
/// cut with `…`, or padded.
pub(super) fn fit(text: &str, width: usize) -> String {
    let text = visible(text.lines().next().unwrap_or(""));
    let total: usize = text.chars().map(char_width).sum();
    let mut out = String::with_capacity(width + 4);
    let mut used = 0;
    if total <= width {
        out.push_str(&text);
        used = total;
    } else {
        for c in text.chars() {
            if used + char_width(c) > width.saturating_sub(1) {
                break;
            }
            out.push(c);
            used += char_width(c);
        }
        out.push('…');
        used += 1;
    }
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
    out
}

/// A summary in `width` columns: like [`fit`], but cut at a word's end when one is near (never mid-word unless a
/// single word fills most of the width).
pub(super) fn fit_summary(text: &str, width: usize) -> String {
    let fitted = fit(text, width);
    let Some(cut) = fitted.trim_end().strip_suffix('…') else {
        return fitted;
    };
    match cut.rfind(' ') {
        Some(space) if cut[..space].chars().map(char_width).sum::<usize>() * 3 >= width * 2 => {
            let kept = cut[..space].trim_end();
            let used: usize = kept.chars().map(char_width).sum::<usize>() + 1;
            format!("{kept}…{}", " ".repeat(width.saturating_sub(used)))
        }
        _ => fitted,
    }
}

/// `2026-11-20T14:15:02Z` → `2026-11-20 14:15`.
pub(super) fn short_time(rfc3339: &str) -> String {
    rfc3339
        .get(..16)
        .map(|t| t.replacen('T', " ", 1))
        .unwrap_or_else(|| rfc3339.to_owned())
}

pub(super) fn short_sha(sha: Option<&str>) -> &str {
    sha.and_then(|s| s.get(..7)).unwrap_or("-")
}

pub(super) fn rejected_table(letters: &Vec<DeadLetter>) -> String {
    if letters.is_empty() {
        return "Nothing rejected.\n".into();
    }
    // 16 + 2 + 12 + 2 + 48 = 80 columns
    let mut out = format!("{:<16}  {:<12}  {}\n", "WHEN", "REASON", "RID / DETAIL");
    for l in letters {
        let what = if l.rid.is_empty() {
            l.detail.clone()
        } else {
            format!("{} — {}", l.rid, l.detail)
        };
        let _ = writeln!(
            out,
            "{}  {}  {}",
            fit(&short_time(&l.received_at), 16),
            fit(&l.reason, 12),
            fit(&what, WIDTH - 32).trim_end()
        );
    }
    out
}

pub(super) fn repo_table(repos: &Vec<Repository>) -> String {
    if repos.is_empty() {
        return "No repositories indexed yet. Track one with `koi-github-indexer add-repo owner/name`.\n".into();
    }
    // 36 + 2 + 8 + 2 + 7 + 2 + 16 = 73 columns
    let mut out = format!(
        "{} {:>8}  {:<7}  {}\n",
        fit("REPOSITORY", 37),
        "EVENTS",
        "COMMIT",
        "LAST UPDATED"
    );
    for r in repos {
        let _ = writeln!(
            out,
            "{} {:>8}  {:<7}  {}",
            fit(&r.full_name, 37),
            r.event_count,
            short_sha(r.latest_commit_sha.as_deref()),
            short_time(&r.last_updated)
        );
    }
    out
}

pub(super) fn event_table(rows: &Vec<EventRow>, query: &EventQuery) -> String {
    if rows.is_empty() {
        return match (&query.event_type, query.offset) {
            (_, offset) if offset > 0 => format!("No events after the first {offset}.\n"),
            (Some(kind), _) => format!(
                "No events of type `{kind}` in this repository.\nEvent types are lower-case and compared exactly \
                 (`push`, `pull_request`, …);\n`summary` lists the types indexed.\n"
            ),
            (None, _) => "No events indexed for this repository yet.\n".into(),
        };
    }
    const TIME: usize = 16;
    const TYPE: usize = 13;
    let summary_width = WIDTH - TIME - TYPE - 4;
    let mut out = format!(
        "{}  {}  SUMMARY\n",
        fit("TIME (UTC)", TIME),
        fit("TYPE", TYPE)
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{}  {}  {}",
            fit(&short_time(&row.timestamp), TIME),
            fit(&row.event_type, TYPE),
            fit_summary(&row.summary, summary_width).trim_end()
        );
    }
    if rows.len() == query.limit {
        let _ = writeln!(
            out,
            "(more may follow: --offset {})",
            query.offset + rows.len()
        );
    }
    out
}

pub(super) fn event_details(details: &EventDetails) -> String {
    let row = &details.row;
    let mut out = String::new();
    for (name, value) in [
        ("event", Some(row.event_rid.as_str())),
        ("repository", Some(row.repo_rid.as_str())),
        ("type", Some(row.event_type.as_str())),
        ("action", row.action.as_deref()),
        ("actor", row.actor.as_deref()),
        ("time", Some(row.timestamp.as_str())),
        ("commit", row.commit_sha.as_deref()),
        ("summary", Some(row.summary.as_str())),
        (
            "bundle hash",
            Some(details.bundle.manifest.sha256_hash.as_str()),
        ),
        (
            "received",
            Some(&*details.bundle.manifest.timestamp.to_string()),
        ),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "{name:<12} {}", visible(value));
        }
    }
    contents_text(&mut out, details.bundle.contents.as_ref());
    out
}

pub(super) fn bundle_details(details: &BundleDetails) -> String {
    let scheme = match details.hash_scheme {
        Some(crate::protocol::HashScheme::Rfc8785) => "rfc8785",
        Some(crate::protocol::HashScheme::Legacy) => "legacy (rid-lib before 3.2.7)",
        None => "unknown (contents not kept)",
    };
    let mut out = String::new();
    for (name, value) in [
        ("rid", details.rid.as_str()),
        ("received", &*details.manifest.timestamp.to_string()),
        ("hash", details.manifest.sha256_hash.as_str()),
        ("hash scheme", scheme),
    ] {
        let _ = writeln!(out, "{name:<12} {}", visible(value));
    }
    contents_text(&mut out, details.contents.as_ref());
    out
}

pub(super) fn summary_text(s: &Summary) -> String {
    let mut out = format!(
        "Events:        {}\nRepositories:  {}\n",
        s.events, s.repositories
    );
    match &s.latest_event {
        Some(e) => {
            let _ = writeln!(
                out,
                "Latest event:  {}",
                fit(
                    &format!("{}  {}", short_time(&e.timestamp), e.summary),
                    WIDTH - 15
                )
                .trim_end()
            );
        }
        None => out.push_str("Latest event:  none yet\n"),
    }
    if !s.event_types.is_empty() {
        out.push_str("\nEVENT TYPE                  EVENTS   SHARE\n");
        let mut types: Vec<_> = s.event_types.iter().collect();
        types.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let total = s.event_types.values().sum::<u64>().max(1) as f64;
        for (name, n) in types {
            let _ = writeln!(
                out,
                "{} {:>7}  {:>5.1}%",
                fit(name, 26),
                n,
                *n as f64 * 100.0 / total
            );
        }
    }
    if !s.top_repos.is_empty() {
        out.push_str("\nMOST ACTIVE REPOSITORIES    EVENTS\n");
        for r in &s.top_repos {
            let _ = writeln!(out, "{} {:>7}", fit(&r.repo, 26), r.count);
        }
    }
    if !s.top_actors.is_empty() {
        out.push_str("\nMOST ACTIVE ACTORS          EVENTS\n");
        for a in &s.top_actors {
            let _ = writeln!(out, "{} {:>7}", fit(&a.actor, 26), a.count);
        }
    }
    out
}

/// A bundle's contents, pretty and terminal-safe, or why they are not there.
fn contents_text(out: &mut String, contents: Option<&crate::protocol::Contents>) {
    match contents {
        Some(contents) => {
            let contents = serde_json::to_value(contents)
                .map(|value| terminal::visible_json(&value))
                .unwrap_or_default();
            let _ = writeln!(out, "contents:\n{contents}");
        }
        None => {
            let _ = writeln!(
                out,
                "contents:    not kept (index.keep_contents = false, or pruned by retention)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_and_pads_by_columns() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("abcdef", 5), "abcd…");
        assert_eq!(fit("naïve café ☕ ok", 13), "naïve café … ");
        assert_eq!(fit("naïve café ☕", 13), "naïve café ☕");
        assert_eq!(fit("☕☕☕☕", 5), "☕☕…");
        assert_eq!(fit("☕☕☕☕", 6), "☕☕… ");
        assert_eq!(fit("line one\nline two", 20).trim_end(), "line one");
        assert_eq!(fit("a\u{1b}[2J\rb", 20).trim_end(), "a\\u{1b}[2J\\rb");
    }

    #[test]
    fn summaries_are_cut_at_a_word_when_one_is_near() {
        assert_eq!(
            fit_summary(
                "Pull request #7 closed (merged) in octo-org/hello-world",
                30
            )
            .trim_end(),
            "Pull request #7 closed…"
        );
        assert_eq!(fit_summary("short", 10), "short     ");
        assert_eq!(fit_summary(&"x".repeat(40), 10), "xxxxxxxxx…");
        assert!(fit_summary("a bbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 20).starts_with("a bbbb"));
    }

    #[test]
    fn tables_fit_80_columns() {
        let row = EventRow {
            event_rid: "orn:github.event:a/b:1".into(),
            repo_rid: "orn:github.repo:a/b".into(),
            event_type: "pull_request_review_comment".into(),
            timestamp: "2026-11-20T14:15:02Z".into(),
            time_source: crate::index::TimeSource::Event,
            commit_sha: None,
            summary: "x".repeat(200),
            bundle_rid: "orn:github.event:a/b:1".into(),
            action: None,
            actor: None,
        };
        let text = event_table(&vec![row.clone()], &EventQuery::default());
        let repo = Repository {
            repo_rid: "orn:github.repo:a/b".into(),
            full_name: format!("{}/{}", "o".repeat(39), "n".repeat(100)),
            repo_url: String::new(),
            first_indexed: "2026-11-20T14:15:02Z".into(),
            last_updated: "2026-11-20T14:15:02Z".into(),
            latest_commit_sha: Some("f".repeat(40)),
            event_count: 12_345_678,
            description: None,
            default_branch: None,
            stars: None,
            forks: None,
            license: None,
        };
        let summary = Summary {
            events: 1,
            repositories: 1,
            event_types: [("x".repeat(60), 1)].into_iter().collect(),
            latest_event: Some(row),
            top_repos: vec![crate::index::RepoCount {
                repo: "o".repeat(39) + "/" + &"r".repeat(100),
                count: 1,
            }],
            top_actors: vec![crate::index::ActorCount {
                actor: "a".repeat(39),
                count: 1,
            }],
        };
        for text in [text, repo_table(&vec![repo]), summary_text(&summary)] {
            for line in text.lines() {
                assert!(line.chars().map(char_width).sum::<usize>() <= 80, "{line}");
            }
        }
    }
}
