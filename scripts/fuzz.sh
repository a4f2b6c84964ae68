#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20) and prints one line per target: executions (and per
# second), coverage, and the result. Exits 1 if any target crashed, hung, or ran out of memory.
#
#   scripts/fuzz.sh [--quick] [SECONDS] [TARGET ...]     (no TARGET: all of them)
#
# --quick (what .ci/run uses): builds without AddressSanitizer and without optimisation, which takes about 3
# minutes from clean instead of 6 to 10, and runs 2 to 7 times fewer inputs a second; panics, overflows (debug
# assertions stay on), hangs and memory limits are still found. Its build is kept in
# ${KOI_FUZZ_TARGET_DIR:-~/.cache/koi-github-indexer/fuzz-target}, shared by every clone on the machine, so a
# second run rebuilds only this crate.
# Installs cargo-fuzz if it is missing and sets RUSTC_BOOTSTRAP=1 itself (libFuzzer's instrumentation needs
# nightly flags; stable rustc accepts them so). Each target starts from its corpus in fuzz/corpus/<target>/,
# seeded from tests/fixtures/ by the suite's `write_seed_corpus`, and keeps what it finds there. Limits: inputs up
# to 64 KiB, 512 MB of memory, 5 s per input. A crash is written to fuzz/artifacts/<target>/ (the line says which
# file); replay it with `cargo fuzz run <target> <file>` from fuzz/, fix it, and keep the input as a regression
# test in tests/fixtures/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = --quick ]; then
  quick=1
  shift
fi
seconds=${1:-20}
shift || true
if [ $quick -eq 1 ]; then
  build_flags=(--sanitizer none --dev)
  export CARGO_TARGET_DIR=${KOI_FUZZ_TARGET_DIR:-$HOME/.cache/koi-github-indexer/fuzz-target}
  what="without sanitizer or optimisation (--quick)"
else
  build_flags=(--debug-assertions)
  what="instrumented, with AddressSanitizer and debug assertions; the first build takes 6 to 10 minutes"
fi
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

echo "fuzz: building the targets ($what)" >&2
build_log=$(mktemp)
if ! (cd fuzz && cargo fuzz build "${build_flags[@]}" >"$build_log" 2>&1); then
  tail -40 "$build_log" >&2
  echo "fuzz: the build failed (above; the whole log: $build_log)" >&2
  exit 1
fi
rm -f "$build_log"

failed=0
failures=0
logs=$(mktemp -d)
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  set +e
  (cd fuzz && cargo fuzz run "${build_flags[@]}" "$target" "corpus/$target" -- \
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
    failures=$((failures + 1))
    kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+|panicked at [^ ]+' "$log" | head -1 || true)
    result="FAILED (${kind:-exit $status}) ${artifact:+→ $artifact}; log: $log"
    grep -E -B2 -A12 'ERROR: libFuzzer|ERROR: AddressSanitizer|panicked at' "$log" | head -40 >&2 || true
  fi
  printf '%-16s %10s runs %8s/s  %-20s %s\n' "$target" "${runs:-?}" "$(( ${runs:-0} / ${took:-$seconds} ))" \
    "${cov:-cov: ?}" "$result"
done
if [ $failed -eq 0 ]; then
  rm -rf "$logs"
  echo "fuzz: ${#targets[@]} targets, ${seconds} s each: all clean" >&2
else
  echo "fuzz: a target FAILED (above); fix it and keep its input in tests/fixtures/fuzz/<target>/" >&2
fi
# The closing line in the plain form CI reads: targets run clean, and targets that found something.
echo "fuzz: $(( ${#targets[@]} - failures )) passed, $failures failed"
exit $failed
