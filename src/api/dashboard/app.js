// The dashboard: read-only views of the node's own API, from the same origin. Every value from the API is put in
// the page as text (never as HTML): event data comes from GitHub and is not trusted.
"use strict";

(function () {
  const API = "/api/processor/github";
  const FEED_ROWS = 100;
  // How many of the newest events the feed opens with.
  const FEED_OPENING = 20;
  const PAGE = 20;
  const COLOURS = ["#0b62c4", "#e8590c", "#13795b", "#9c36b5", "#c92a2a", "#5c940d", "#868e96"];

  const $ = (selector) => document.querySelector(selector);
  const problems = new Map(); // what is wrong now, by source: shown in the banner

  function setProblem(source, message) {
    if (message) problems.set(source, message); else problems.delete(source);
    const banner = $("#banner");
    banner.hidden = problems.size === 0;
    banner.textContent = [...problems.values()].join(" · ");
  }

  // ---- The token (api.token_env): asked for once, kept in this tab's sessionStorage ----
  // A link may carry it in the fragment (`/#token=…`), which browsers never send to a server: it is stored and
  // taken out of the address bar at once.

  const TOKEN_KEY = "koi-api-token";
  const waitingForToken = [];

  function takeTokenFromFragment() {
    const match = /^#token=(.+)$/.exec(window.location.hash);
    if (!match) return;
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search);
    $("#token-form").hidden = true;
    setProblem("token", null);
    for (const resolve of waitingForToken.splice(0)) resolve();
  }

  function authHeaders(extra, token) {
    const headers = new Headers(extra || {});
    if (token) headers.set("Authorization", `Bearer ${token}`);
    return headers;
  }

  // Shows the token form; resolves once a token has been entered.
  function askForToken() {
    const form = $("#token-form");
    if (form.hidden) {
      form.hidden = false;
      $("#token-input").focus();
    }
    return new Promise((resolve) => waitingForToken.push(resolve));
  }

  function tokenEntered(event) {
    event.preventDefault();
    const value = $("#token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("#token-input").value = "";
    $("#token-form").hidden = true;
    setProblem("token", null);
    for (const resolve of waitingForToken.splice(0)) resolve();
  }

  // fetch() with the token; a 401 asks for it (again) and retries once it is given.
  async function apiFetch(path, options) {
    for (;;) {
      const sent = sessionStorage.getItem(TOKEN_KEY);
      const response = await fetch(path, { ...(options || {}), headers: authHeaders((options || {}).headers, sent) });
      if (response.status !== 401) return response;
      // A token entered while this request was on its way is not the one refused: try again with it.
      if (sessionStorage.getItem(TOKEN_KEY) !== sent) continue;
      sessionStorage.removeItem(TOKEN_KEY);
      setProblem("token", "The API needs its token: enter it above.");
      await askForToken();
    }
  }

  async function getJson(path) {
    const response = await apiFetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (text instanceof Node) td.append(text); else td.textContent = text == null ? "" : String(text);
    if (className) td.className = className;
    row.append(td);
    return td;
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    // With a token, a plain navigation would be refused (it cannot send the header): fetch the JSON with the
    // token and open it in a new tab instead.
    a.addEventListener("click", async (event) => {
      if (!sessionStorage.getItem(TOKEN_KEY)) return;
      event.preventDefault();
      const tab = window.open("", "_blank");
      try {
        const response = await apiFetch(href, { headers: { Accept: "application/json" } });
        const blob = new Blob([await response.text()], { type: "application/json" });
        if (tab) tab.location = URL.createObjectURL(blob);
      } catch (error) {
        if (tab) tab.close();
        setProblem("details", `The details could not be read (${error.message}).`);
      }
    });
    return a;
  }

  function eventHref(rid) {
    return `${API}/events/${encodeURIComponent(rid)}`;
  }

  function repoPath(fullName) {
    return fullName.split("/").map(encodeURIComponent).join("/");
  }

  // "2026-11-20 10:03" in UTC; the full time in the title.
  function shortTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso || "");
    return date.toISOString().slice(0, 16).replace("T", " ");
  }

  function ago(iso) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (!Number.isFinite(seconds)) return "–";
    if (seconds < 90) return `${seconds} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  function number(n) {
    return typeof n === "number" ? n.toLocaleString("en") : "–";
  }

  // ---- Health: /status, /polls and /metrics, every 5 s ----

  let lastIndexed = null; // [count, time] from the previous /metrics read

  function metricSum(text, name) {
    let sum = 0;
    let found = false;
    for (const line of text.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) {
        const value = Number(line.slice(line.lastIndexOf(" ") + 1));
        if (Number.isFinite(value)) { sum += value; found = true; }
      }
    }
    return found ? sum : null;
  }

  // The cards fill from /status alone, as soon as it answers; the neighbours' poll outcomes (/polls) and the rate
  // (/metrics) follow on their own, so a slow one never holds the others back.
  async function refreshHealth() {
    let status;
    try {
      status = await getJson(`${API}/status`);
      setProblem("api", null);
    } catch (error) {
      setProblem("api", `The node's API does not answer (${error.message}); retrying.`);
      return;
    }
    const details = status.details || {};
    $("#node-name").textContent = details.node_name || "koi-github-indexer";
    const latest = details.latest_event;
    $("#node-line").textContent =
      `${details.node_rid || ""} · ${details.node_type || ""}` +
      (latest ? ` · newest event ${shortTime(latest.timestamp)} UTC` : "");
    $("#events-indexed").textContent = number(details.events);
    $("#repositories-count").textContent = number(details.repositories);
    $("#inbox-depth").textContent = number(details.inbox);
    $("#rejected-count").textContent = number(details.rejected);
    // The JetStream sink's lag (event versions not yet published), when one is configured; its error as the tip.
    const sink = details.sink;
    $("#sink-card").hidden = !sink;
    if (sink) {
      $("#sink-lag").textContent = number(sink.lag);
      $("#sink-card").title = sink.last_error ? `Cannot publish: ${sink.last_error}` : `Published up to entry ${sink.cursor}`;
      $("#sink-card").classList.toggle("failing", Boolean(sink.last_error));
    }
    const neighbours = details.neighbours || [];
    renderNeighbours(neighbours, lastPolls);
    getJson(`${API}/polls?limit=100`)
      .then((polls) => { lastPolls = Array.isArray(polls) ? polls : []; renderNeighbours(neighbours, lastPolls); })
      .catch(() => { /* the outcomes stay as last read */ });
    apiFetch("/metrics")
      .then((r) => (r.ok ? r.text() : ""))
      .then(showRate)
      .catch(() => { /* the rate stays as last read */ });
  }

  let lastPolls = [];

  // Events indexed per minute, from the counter's growth between two reads.
  function showRate(metrics) {
    const indexed = metricSum(metrics, "koi_indexer_events_indexed_total");
    if (indexed == null) return;
    const now = Date.now();
    if (lastIndexed && now > lastIndexed[1]) {
      const perMinute = ((indexed - lastIndexed[0]) * 60000) / (now - lastIndexed[1]);
      $("#events-rate").textContent = number(Math.max(0, Math.round(perMinute)));
    }
    lastIndexed = [indexed, now];
  }

  function renderNeighbours(neighbours, attempts) {
    const body = $("#neighbours tbody");
    const rows = neighbours.map((n) => {
      const mine = attempts.filter((a) => a.neighbour === n.rid); // newest first
      const last = mine[0];
      const lastOk = mine.find((a) => a.outcome === "ok");
      const tr = document.createElement("tr");
      const name = document.createElement("span");
      name.textContent = n.rid.replace(/^orn:koi-net\.node:/, "").replace(/\+.*/, "");
      name.title = `${n.rid}${n.base_url ? " at " + n.base_url : ""}`;
      cell(tr, name);
      const outcome = cell(tr, last ? `${last.outcome}, ${ago(last.time)} ago` : "not yet",
        last ? (last.outcome === "ok" ? "outcome-ok" : "outcome-bad") : "");
      if (last && last.error) outcome.title = last.error;
      cell(tr, lastOk ? ago(lastOk.time) : "–", "num");
      cell(tr, n.failures, "num");
      cell(tr, n.caught_up ? "yes" : "not yet");
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      cell(tr, "No neighbours yet.").colSpan = 5;
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  // ---- Live feed: the SSE stream, read with fetch (EventSource cannot send the token) ----

  let stream = null; // the AbortController of the stream being read
  let lastSeq = null;

  function feedQuery(after) {
    const form = new FormData($("#feed-filters"));
    const query = new URLSearchParams();
    for (const name of ["repo", "event_type", "actor"]) {
      const value = String(form.get(name) || "").trim();
      if (value) query.set(name, value);
    }
    if (form.get("sample") && form.get("sample") !== "1") query.set("sample", form.get("sample"));
    if (after != null) query.set("after", after);
    return query;
  }

  function setStream(state) {
    const pill = $("#stream-state");
    pill.textContent = `Stream: ${state}`;
    pill.className = "pill " + (state === "live" ? "live" : "down");
    setProblem("stream", state === "live" ? null
      : "The live stream is disconnected; reconnecting, and the feed will resume where it stopped.");
  }

  // One Server-Sent Events message (the lines before a blank line): its event name, id and data.
  function parseMessage(block) {
    const message = { event: "message", id: null, data: [] };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // a keep-alive comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") message.event = value;
      else if (field === "id") message.id = value;
      else if (field === "data") message.data.push(value);
    }
    return { event: message.event, id: message.id, data: message.data.join("\n") };
  }

  function handleMessage(message) {
    if (message.event === "github_event") {
      lastSeq = Number(message.id);
      try {
        addFeedRow(lastSeq, JSON.parse(message.data));
      } catch (error) {
        setProblem("feed", `An event could not be shown: ${error.message}`);
      }
    } else if (message.event === "lagged") {
      // Fell behind: pick up from the last event shown.
      let resume = lastSeq;
      try { resume = JSON.parse(message.data).resume_after; } catch (_) { /* keep lastSeq */ }
      lastSeq = resume;
      return "reconnect";
    }
    return null;
  }

  async function readStream(after, controller) {
    const response = await apiFetch(`${API}/stream?${feedQuery(after)}`, {
      headers: { Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    setStream("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (handleMessage(parseMessage(block)) === "reconnect") {
          controller.abort();
          return;
        }
      }
    }
  }

  // Reads the stream from `after`, and again from the last event shown whenever it ends or fails.
  function connect(after) {
    if (stream) stream.abort();
    const controller = new AbortController();
    stream = controller;
    (async () => {
      let from = after;
      while (stream === controller) {
        try {
          await readStream(from, controller);
        } catch (error) {
          if (stream !== controller) return; // replaced by a newer connection
        }
        if (stream !== controller) return;
        from = lastSeq;
        if (controller.signal.aborted) { connect(from); return; }
        setStream("reconnecting");
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    })();
  }

  // The feed opens with the newest events already indexed (the stream replays what follows `after`), then goes
  // on live. Without /status's number yet, it starts live.
  async function openFeed() {
    let after = null;
    try {
      const status = await getJson(`${API}/status`);
      const last = Number((status.details || {}).last_seq);
      if (Number.isFinite(last)) after = Math.max(0, last - FEED_OPENING);
    } catch (_) { /* live only; the banner reports the API */ }
    connect(after);
  }

  function addFeedRow(seq, event) {
    const tr = document.createElement("tr");
    tr.className = "fresh";
    tr.dataset.seq = seq;
    tr.dataset.rid = event.event_rid;
    cell(tr, seq, "num");
    const when = link(eventHref(event.event_rid), shortTime(event.timestamp));
    when.title = `${event.timestamp} (details of ${event.event_rid})`;
    cell(tr, when, "time");
    cell(tr, event.repo);
    cell(tr, event.action ? `${event.event_type} (${event.action})` : event.event_type);
    cell(tr, event.actor || "–");
    cell(tr, event.summary, "summary");
    const body = $("#feed-table tbody");
    body.prepend(tr);
    while (body.rows.length > FEED_ROWS) body.deleteRow(body.rows.length - 1);
    $("#feed-empty").hidden = true;
    soon("health", refreshHealth, 1000);
    soon("repos", refreshRepos, 1000);
    soon("stats", refreshStats, 5000);
  }

  // New events change the counts, the table and the charts: refresh each at most once per `wait` while they come.
  const timers = {};
  function soon(name, refresh, wait) {
    if (!timers[name]) {
      timers[name] = setTimeout(() => { timers[name] = null; refresh(); }, wait);
    }
  }

  // ---- Charts: /stats ----

  const charts = {};

  function dayText(date) {
    return date.toISOString().slice(0, 10);
  }

  function daySeconds(day) {
    return Date.parse(`${day}T00:00:00Z`) / 1000;
  }

  async function refreshStats() {
    const range = $("#range").value;
    const query = new URLSearchParams({ top: "10" });
    if (range !== "all") {
      const since = new Date(Date.now() - (Number(range) - 1) * 86400000);
      query.set("since", dayText(since));
    }
    try {
      const stats = await getJson(`${API}/stats?${query}`);
      drawStats(stats, range);
      setProblem("stats", null);
    } catch (error) {
      setProblem("stats", `Statistics could not be read (${error.message}).`);
    }
  }

  function chartWidth(element) {
    return Math.max(240, element.clientWidth || 600);
  }

  function replaceChart(id, options, data) {
    const element = document.getElementById(id);
    if (charts[id]) charts[id].destroy();
    element.replaceChildren();
    charts[id] = new uPlot({ width: chartWidth(element), height: 240, ...options }, data, element);
  }

  function drawStats(stats, range) {
    $("#stats-total").textContent = `${number(stats.total)} events` +
      (range === "all" ? " in the whole index" : ` in the last ${range} days`) + " (UTC days).";

    // Per day: bars stacked by type, the six commonest each in its colour and the rest as "other"; days without
    // events are empty. uPlot draws series in order, so each bar is the running total up to its type, drawn from
    // the tallest (all types) down, each over the one before.
    const types = Object.entries(stats.by_type || {}).sort((a, b) => b[1] - a[1]).map(([t]) => t);
    const shown = types.slice(0, 6);
    const byDay = new Map((stats.by_day || []).map((d) => [d.day, d]));
    const today = dayText(new Date());
    const first = range === "all"
      ? ((stats.by_day || [])[0] || { day: today }).day
      : dayText(new Date(Date.now() - (Number(range) - 1) * 86400000));
    const days = [];
    for (let t = daySeconds(first); t <= daySeconds(today); t += 86400) days.push(t);
    const counts = shown.map((type) => days.map((t) => {
      const day = byDay.get(dayText(new Date(t * 1000)));
      return day ? (day.by_type[type] || 0) : 0;
    }));
    if (types.length > shown.length) {
      counts.push(days.map((t, i) => {
        const day = byDay.get(dayText(new Date(t * 1000)));
        return day ? day.total - shown.reduce((sum, _, k) => sum + counts[k][i], 0) : 0;
      }));
      shown.push("other");
    }
    const stacked = counts.map((_, k) => days.map((_, i) => {
      let sum = 0;
      for (let j = 0; j <= k; j++) sum += counts[j][i];
      return sum || null;
    }));
    const order = shown.map((_, k) => k).reverse();
    const plotted = counts.reduce((sum, s) => sum + s.reduce((a, b) => a + b, 0), 0);
    const bars = uPlot.paths.bars({ size: [0.8, 40] });
    replaceChart("chart-days", {
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: {
        x: { time: true, range: () => [days[0] - 43200, days[days.length - 1] + 43200] },
        y: { range: (u, min, max) => [0, Math.max(1, max)] },
      },
      series: [{}].concat(order.map((k) => ({
        label: shown[k],
        fill: COLOURS[k % COLOURS.length],
        stroke: COLOURS[k % COLOURS.length],
        paths: bars,
        points: { show: false },
        // The legend shows the type's own count that day, not the running total.
        value: (u, v, si, i) => (i == null ? "" : String(counts[k][i])),
      }))),
      axes: [{}, { size: 50 }],
    }, [days, ...order.map((k) => stacked[k])]);
    const chart = document.getElementById("chart-days");
    chart.dataset.total = String(plotted);
    chart.dataset.style = "stacked-bars";
    chart.dataset.types = JSON.stringify(shown);
    chart.dataset.days = JSON.stringify(days
      .map((t, i) => [dayText(new Date(t * 1000)), counts.reduce((sum, s) => sum + s[i], 0)])
      .filter(([, total]) => total > 0));

    drawBars("chart-repos", (stats.top_repos || []).map((r) => [r.repo, r.count]), COLOURS[0]);
    drawBars("chart-actors", (stats.top_actors || []).map((a) => [a.actor, a.count]), COLOURS[1]);
  }

  function drawBars(id, pairs, colour) {
    const labels = pairs.map(([label]) => label);
    const xs = pairs.map((_, i) => i);
    replaceChart(id, {
      scales: {
        x: { time: false, range: [-0.5, Math.max(0.5, pairs.length - 0.5)] },
        y: { range: (u, min, max) => [0, Math.max(1, max)] },
      },
      legend: { show: false },
      cursor: { show: true, points: { show: false } },
      series: [
        { value: (u, i) => (i == null ? "" : labels[Math.round(i)] || "") },
        { label: "events", fill: colour, stroke: colour, paths: uPlot.paths.bars({ size: [0.7, 48] }), points: { show: false } },
      ],
      axes: [
        {
          splits: () => xs,
          values: (u, splits) => splits.map((i) => {
            const label = labels[i] || "";
            return label.length > 18 ? label.slice(0, 17) + "…" : label;
          }),
          rotate: -30,
          size: 90,
          gap: 4,
        },
        { size: 50 },
      ],
    }, [xs, pairs.map(([, count]) => count)]);
    const element = document.getElementById(id);
    element.dataset.labels = JSON.stringify(labels);
    element.setAttribute("aria-label", `${element.getAttribute("aria-label").split(":")[0]}: ` +
      pairs.map(([label, count]) => `${label} ${count}`).join(", "));
  }

  // ---- Repositories: /repositories, sortable; a repository's events, paged ----

  let repos = [];
  let sortKey = "last_updated";
  let sortDescending = true;
  let selected = null; // [full_name, offset]

  async function refreshRepos() {
    try {
      repos = await getJson(`${API}/repositories`);
      renderRepos();
      const names = repos.map((r) => {
        const option = document.createElement("option");
        option.value = r.full_name;
        return option;
      });
      $("#repo-names").replaceChildren(...names);
      setProblem("repos", null);
    } catch (error) {
      setProblem("repos", `Repositories could not be read (${error.message}).`);
    }
  }

  function renderRepos() {
    const sorted = repos.slice().sort((a, b) => {
      const x = a[sortKey] == null ? "" : a[sortKey];
      const y = b[sortKey] == null ? "" : b[sortKey];
      const order = x < y ? -1 : x > y ? 1 : 0;
      return sortDescending ? -order : order;
    });
    const rows = sorted.map((repo) => {
      const tr = document.createElement("tr");
      tr.dataset.repo = repo.full_name;
      const open = document.createElement("button");
      open.type = "button";
      open.className = "link";
      open.textContent = repo.full_name;
      open.addEventListener("click", () => showRepoEvents(repo.full_name, 0));
      cell(tr, open);
      cell(tr, number(repo.event_count), "num");
      const updated = cell(tr, shortTime(repo.last_updated), "time");
      updated.title = repo.last_updated;
      const code = document.createElement("code");
      code.textContent = repo.latest_commit_sha ? repo.latest_commit_sha.slice(0, 10) : "–";
      if (repo.latest_commit_sha) code.title = repo.latest_commit_sha;
      cell(tr, code);
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      cell(tr, "No repositories yet.").colSpan = 4;
      rows.push(tr);
    }
    $("#repo-table tbody").replaceChildren(...rows);
    for (const th of document.querySelectorAll("#repo-table th")) {
      const key = th.querySelector("button").dataset.key;
      th.setAttribute("aria-sort", key === sortKey ? (sortDescending ? "descending" : "ascending") : "none");
    }
  }

  async function showRepoEvents(fullName, offset) {
    selected = [fullName, offset];
    const panel = $("#repo-events");
    try {
      const events = await getJson(
        `${API}/repositories/${repoPath(fullName)}/events?limit=${PAGE + 1}&offset=${offset}`);
      const rows = events.slice(0, PAGE).map((event) => {
        const tr = document.createElement("tr");
        cell(tr, link(eventHref(event.event_rid), shortTime(event.timestamp)), "time");
        cell(tr, event.action ? `${event.event_type} (${event.action})` : event.event_type);
        cell(tr, event.actor || "–");
        cell(tr, event.summary, "summary");
        return tr;
      });
      panel.querySelector("tbody").replaceChildren(...rows);
      $("#repo-events-title").textContent = `Events of ${fullName}`;
      $("#repo-page").textContent = events.length === 0 ? "no events"
        : `${offset + 1}–${offset + Math.min(PAGE, events.length)}`;
      $("#repo-prev").disabled = offset === 0;
      $("#repo-next").disabled = events.length <= PAGE;
      const wasHidden = panel.hidden;
      panel.hidden = false;
      if (wasHidden) $("#repo-events-title").focus();
      setProblem("repo-events", null);
    } catch (error) {
      setProblem("repo-events", `The events of ${fullName} could not be read (${error.message}).`);
    }
  }

  // ---- Start ----

  function start() {
    takeTokenFromFragment();
    // A token link opened in a tab that already shows the page changes only the fragment.
    window.addEventListener("hashchange", takeTokenFromFragment);
    $("#token-form").addEventListener("submit", tokenEntered);
    if (typeof uPlot !== "function") {
      setProblem("charts", "The charting library did not load.");
    }
    $("#feed-filters").addEventListener("submit", (e) => {
      e.preventDefault();
      $("#feed-table tbody").replaceChildren();
      $("#feed-empty").hidden = false;
      lastSeq = null;
      openFeed();
    });
    $("#range").addEventListener("change", refreshStats);
    for (const button of document.querySelectorAll("#repo-table th button")) {
      button.addEventListener("click", () => {
        const key = button.dataset.key;
        sortDescending = key === sortKey ? !sortDescending : key !== "full_name";
        sortKey = key;
        renderRepos();
      });
    }
    $("#repo-prev").addEventListener("click", () => selected && showRepoEvents(selected[0], Math.max(0, selected[1] - PAGE)));
    $("#repo-next").addEventListener("click", () => selected && showRepoEvents(selected[0], selected[1] + PAGE));
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        for (const [id, chart] of Object.entries(charts)) {
          chart.setSize({ width: chartWidth(document.getElementById(id)), height: 240 });
        }
      }, 150);
    });

    openFeed();
    refreshHealth();
    refreshStats();
    refreshRepos();
    setInterval(refreshHealth, 5000);
    setInterval(refreshStats, 30000);
    setInterval(refreshRepos, 15000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
