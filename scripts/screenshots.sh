#!/usr/bin/env bash
# Refreshes the README's dashboard pictures (docs/dashboard-desktop.png, docs/dashboard-phone.png) by running the
# dashboard's browser test with KOI_SCREENSHOTS_DIR=docs. The ordinary test run writes them to a temp dir instead,
# so that running the tests never changes tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-python.sh
KOI_SCREENSHOTS_DIR="$PWD/docs" cargo test --test dashboard -- --exact \
  the_dashboard_shows_health_live_events_charts_and_repositories_in_a_real_browser
git status --short docs/
