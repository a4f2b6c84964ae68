#!/usr/bin/env bash
# Runs every test: installs the Python koi-net 2.1.2 environment the interoperability tests need (idempotent,
# instant when already there), then the whole cargo test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
cargo test --all-targets "$@"
