#!/usr/bin/env bash
# Checks systemd/koi-github-indexer.service:
#   1. `systemd-analyze verify` — syntax, unknown keys, bad values, ExecStart executable. verify exits 0 even when it
#      warns ("Unknown key …, ignoring"), so this fails on any line it prints about the unit, not only on its status.
#   2. `systemd-analyze security --offline=true` — the sandbox's exposure score must stay at or below
#      $KOI_MAX_EXPOSURE (tenths: 20 = 2.0; the unit scores about 1.1), so a hardening line lost in an edit fails CI.
#
# Installs systemd from Debian packages when systemd-analyze is missing (once; a no-op when present).
#
# ExecStart's binary must exist for verify to pass. The unit points at /usr/local/bin/koi-github-indexer, so the
# check runs on a temporary copy whose ExecStart points at $KOI_INDEXER_BIN when set (tests/systemd_unit.rs passes the
# binary cargo built for it), else at a stub script. The stub is the default so that this script never runs cargo
# itself: verify only checks that the file is executable, and a cargo build from here would wait on the build lock
# when the script runs under `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

unit=systemd/koi-github-indexer.service
name=$(basename "$unit")
max_exposure=${KOI_MAX_EXPOSURE:-20}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "verify-systemd: systemd-analyze not found; installing systemd from Debian packages" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "verify-systemd: need root for apt-get; run: sudo apt-get install -y --no-install-recommends systemd" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=${KOI_INDEXER_BIN:-}
if [ -z "$bin" ]; then
  bin="$tmp/koi-github-indexer"
  printf '#!/bin/sh\nexit 0\n' >"$bin"
  chmod 0755 "$bin"
fi
if [ ! -x "$bin" ]; then
  echo "verify-systemd: KOI_INDEXER_BIN=$bin is not an executable file" >&2
  exit 1
fi
# Same file name as the real unit: verify names the unit in its messages, and that is what we look for.
sed "s|/usr/local/bin/koi-github-indexer|$bin|" "$unit" >"$tmp/$name"

status=0
out=$(systemd-analyze verify "$tmp/$name" 2>&1) || status=$?
if [ "$status" -ne 0 ] || printf '%s\n' "$out" | grep -qF "$name"; then
  printf 'verify-systemd: systemd-analyze verify rejects %s (exit %s):\n%s\n' "$unit" "$status" "$out" >&2
  exit 1
fi
if [ -n "$out" ]; then
  # Not about our unit (e.g. a host unit it depends on); shown, not fatal.
  printf 'verify-systemd: note, systemd-analyze verify said:\n%s\n' "$out" >&2
fi

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  status=0
  report=$(systemd-analyze security --offline=true --threshold="$max_exposure" "$tmp/$name" 2>&1) || status=$?
  score=$(printf '%s\n' "$report" | grep -o 'Overall exposure level for [^:]*: [0-9.]*' | grep -o '[0-9.]*$' || true)
  if [ "$status" -ne 0 ]; then
    printf '%s\n' "$report" | grep -F '✗' >&2 || true
    echo "verify-systemd: exposure ${score:-?} is above the allowed $((max_exposure / 10)).$((max_exposure % 10)) — a hardening setting was lost" >&2
    exit 1
  fi
  echo "verify-systemd: $unit OK (systemd-analyze verify clean; security exposure ${score:-?})" >&2
else
  echo "verify-systemd: $unit OK (systemd-analyze verify clean; this systemd has no offline security check)" >&2
fi
