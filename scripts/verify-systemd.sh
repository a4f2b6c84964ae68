#!/usr/bin/env bash
# Checks systemd/koi-github-indexer.service with `systemd-analyze verify` and fails on any complaint about it.
# verify needs ExecStart's binary to exist, so a copy of the unit points it at the freshly built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v systemd-analyze >/dev/null; then
  echo "verify-systemd: installing systemd (for systemd-analyze) from Debian packages" >&2
  apt-get update -qq && apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
cargo build --quiet
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/koi-github-indexer|$(pwd)/target/debug/koi-github-indexer|" \
  systemd/koi-github-indexer.service > "$tmp/koi-github-indexer.service"
out=$(systemd-analyze verify "$tmp/koi-github-indexer.service" 2>&1 || true)
if printf '%s\n' "$out" | grep -q "koi-github-indexer.service"; then
  printf 'verify-systemd: systemd-analyze complains about the unit:\n%s\n' "$out" >&2
  exit 1
fi
echo "verify-systemd: systemd/koi-github-indexer.service OK" >&2
