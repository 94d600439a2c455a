#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/) with AFL++ through cargo-afl, on the stable toolchain: each target for FUZZ_TIME
# seconds (default 60), one after the other, starting from the committed seed corpus (fuzz/corpus/<target>) and
# resuming from earlier runs' findings in fuzz/out/<target>. Prints each target's executions, coverage and findings
# and fails when a target found a crash or a hang. See docs/reliability.md for longer and parallel runs.
#
#   FUZZ_TIME=3600 make fuzz                       # an hour per target
#   FUZZ_TARGETS="osc_mutation" make fuzz          # one target
#   FUZZ_TIMEOUT_MS=5000                           # an input taking longer than this is a hang
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "$0")/../fuzz" && pwd)"
FUZZ_TIME="${FUZZ_TIME:-60}"
FUZZ_TARGETS="${FUZZ_TARGETS:-provider_config osc_mutation admission_review image_vector}"
FUZZ_TIMEOUT_MS="${FUZZ_TIMEOUT_MS:-5000}"
CARGO_AFL_VERSION="0.18.2"

# cargo-afl builds AFL++ (afl-fuzz and its runtime) from the sources in its crate; nothing beyond a C compiler and
# make is needed, and no nightly toolchain.
if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --locked --version "$CARGO_AFL_VERSION"
fi
if ! output="$(cargo afl config --build 2>&1)"; then
  grep -q "already built" <<<"$output" || { echo "$output" >&2; exit 1; }
fi

cd "$FUZZ_DIR"
mkdir -p out
cargo afl build --release --features afl --bins

dictionary() {
  case "$1" in
    provider_config) echo dict/provider_config.dict ;;
    osc_mutation | admission_review) echo dict/osc.dict ;;
    image_vector) echo dict/image_vector.dict ;;
  esac
}

stat() { sed -n "s/^$1 *: *//p" "$2"; }

status=0
for target in $FUZZ_TARGETS; do
  echo "== $target: fuzzing for ${FUZZ_TIME}s"
  # AFL_AUTORESUME continues a previous run's queue; the machine's CPU governor and core-dump handler are left as
  # they are (AFL's checks for them need root-owned system settings that do not matter for finding bugs).
  AFL_NO_UI=1 AFL_AUTORESUME=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    cargo afl fuzz -i "corpus/$target" -o "out/$target" -x "$(dictionary "$target")" -t "$FUZZ_TIMEOUT_MS" \
    -V "$FUZZ_TIME" "target/release/$target" >"out-$target.log" 2>&1 || {
      echo "afl-fuzz failed for $target; its output:" >&2
      tail -40 "out-$target.log" >&2
      exit 1
    }
  stats="out/$target/default/fuzzer_stats"
  crashes="$(stat saved_crashes "$stats")"
  hangs="$(stat saved_hangs "$stats")"
  echo "   executions $(stat execs_done "$stats"), $(stat execs_per_sec "$stats")/s," \
    "edges $(stat edges_found "$stats") of $(stat total_edges "$stats"), corpus $(stat corpus_count "$stats")," \
    "crashes $crashes, hangs $hangs"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    echo "   findings in $FUZZ_DIR/out/$target/default/{crashes,hangs}; replay one with:" \
      "cargo run --manifest-path fuzz/Cargo.toml --bin $target -- <file>" >&2
    status=1
  fi
done
exit "$status"
