#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20) and prints one line per target: executions (and per
# second), coverage, and the result. Exits 1 if any target crashed, hung, or ran out of memory.
#
#   scripts/fuzz.sh [SECONDS] [TARGET ...]     (no TARGET: all of them)
#
# Installs cargo-fuzz if it is missing and sets RUSTC_BOOTSTRAP=1 itself (libFuzzer's instrumentation needs
# nightly flags; stable rustc accepts them so). Each target starts from its corpus in fuzz/corpus/<target>/,
# seeded from tests/fixtures/ by the suite's `write_seed_corpus`, and keeps what it finds there. Limits: inputs up
# to 64 KiB, 512 MB of memory, 5 s per input. A crash is written to fuzz/artifacts/<target>/ (the line says which
# file); replay it with `cargo fuzz run <target> <file>` from fuzz/, fix it, and keep the input as a regression
# test in tests/fixtures/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (once; about a minute)" >&2
  cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

echo "fuzz: seeding the corpora from tests/fixtures/" >&2
KOI_FUZZ_CORPUS=$(pwd)/fuzz/corpus cargo test --quiet --test fuzz_regressions -- --ignored --exact write_seed_corpus \
  >/dev/null

echo "fuzz: building the targets (instrumented, with debug assertions; the first build takes a few minutes)" >&2
(cd fuzz && cargo fuzz build --debug-assertions 2>&1 | grep -E "^(error|warning: unused)" || true)

failed=0
logs=$(mktemp -d)
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  set +e
  (cd fuzz && cargo fuzz run --debug-assertions "$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=512 -timeout=5 -print_final_stats=1 \
      >"$log" 2>&1)
  status=$?
  set -e
  # (each `|| true`: a line missing from the log is a `?` in the report, not the end of the script)
  runs=$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  took=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' | tail -1 || true)
  [ "${took:-0}" -gt 0 ] || took=1
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //' || true)
  if [ $status -eq 0 ]; then
    result=ok
  else
    failed=1
    kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+|panicked at [^ ]+' "$log" | head -1 || true)
    result="FAILED (${kind:-exit $status}) ${artifact:+→ $artifact}; log: $log"
  fi
  printf '%-16s %10s runs %8s/s  %-20s %s\n' "$target" "${runs:-?}" "$(( ${runs:-0} / ${took:-$seconds} ))" \
    "${cov:-cov: ?}" "$result"
done
[ $failed -eq 0 ] && rm -rf "$logs"
exit $failed
