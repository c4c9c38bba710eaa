#!/bin/sh
# Runs every libFuzzer target of a TFCPP_FUZZ build for a bounded time on a copy of its seed corpus.
# usage: fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET
# Exit status non-zero if any target found a crash, a leak, a sanitizer report or a timeout; the reproducer is kept
# in BUILD_DIR/fuzz-artifacts/ (rerun: BUILD_DIR/fuzz_X BUILD_DIR/fuzz-artifacts/crash-...).
# FUZZ_SEED=N fixes libFuzzer's random seed, so a run explores the same inputs every time (make test's gate is
# reproducible: a slower machine covers a prefix of what a faster one does); unset, every run explores anew.
set -u
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS}
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
work="$build/fuzz-work"
artifacts="$build/fuzz-artifacts"
mkdir -p "$artifacts"
failed=""
# libtorch and OpenMP keep allocations for the process lifetime; leaks are checked per input by libFuzzer itself.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
for target in "$build"/fuzz_*; do
  [ -x "$target" ] && [ -f "$target" ] || continue
  name=$(basename "$target")
  corpus="$work/$name"
  rm -rf "$corpus" && mkdir -p "$corpus"
  [ -d "$here/corpus/$name" ] && cp "$here/corpus/$name"/* "$corpus/"
  # The hostile corpus of the tests (tests/fixtures/hostile) seeds the target that reads that kind of file.
  case $name in
    fuzz_safetensors) kinds="safetensors" ;;
    fuzz_config) kinds="config generation" ;;
    fuzz_tokenizer_json) kinds="tokenizer" ;;
    fuzz_index) kinds="index" ;;
    *) kinds="" ;;
  esac
  for kind in $kinds; do
    find "$here/../tests/fixtures/hostile/$kind" -type f -size -4M | while read -r file; do
      cp "$file" "$corpus/hostile-$kind-$(echo "${file#*/hostile/$kind/}" | tr / _)"
    done
  done
  log="$build/$name.log"
  "$target" "$corpus" ${FUZZ_SEED:+-seed=$FUZZ_SEED} -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -max_len=16384 \
    -artifact_prefix="$artifacts/$name-" -print_final_stats=1 >"$log" 2>&1
  status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "$name: ${runs:-?} executions in ${seconds}s, $cov, exit $status"
  if [ $status -ne 0 ]; then
    failed="$failed $name"
    tail -40 "$log"
  fi
done
if [ -n "$failed" ]; then
  echo "fuzzing found problems in:$failed (reproducers in $artifacts)"
  exit 1
fi
