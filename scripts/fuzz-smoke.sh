#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*/fuzz_*.c) with clang into build-fuzz
# and runs each one for FUZZ_SECONDS (default 30) with its protocol's
# dictionary and a scratch copy of its seed corpus, so the committed corpus
# stays small. Prints per target the executions and the coverage reached.
# Exits 1 if any target crashes, leaks, times out or fails to build; 77 when
# clang is missing. Crash inputs are kept as build-fuzz/<target>-crash-*.
#
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh
#   FUZZ_TARGETS="fuzz_coap_core" scripts/fuzz-smoke.sh   # a subset
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
secs=${FUZZ_SECONDS:-30}
only=${FUZZ_TARGETS:-}

case $secs in '' | *[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a number, got '$secs'" >&2; exit 2 ;; esac

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang not found; the libFuzzer targets need it" >&2
    exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/m2m-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fuzz: building into $build"
if ! cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DM2M_FUZZ=ON >"$work/build.log" 2>&1 ||
    ! cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >>"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    exit 1
fi

failed=()
ran=0
for src in "$root"/fuzz/*/fuzz_*.c; do
    [ -e "$src" ] || continue
    name=$(basename "$src" .c)
    dir=$(dirname "$src")
    if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
        continue
    fi
    bin=$build/$name
    if [ ! -x "$bin" ]; then
        echo "fuzz: $name was not built" >&2
        failed+=("$name")
        continue
    fi

    corpus=$work/$name
    mkdir -p "$corpus"
    if [ -d "$dir/corpus/$name" ]; then
        cp -R "$dir/corpus/$name/." "$corpus/"
    fi
    # One dictionary per target if present, else the protocol's.
    dict=()
    for d in "$dir/$name.dict" "$dir/$(basename "$dir").dict"; do
        if [ -f "$d" ]; then
            dict=("-dict=$d")
            break
        fi
    done

    log=$work/$name.log
    status=ok
    if ! "$bin" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build/$name-" "${dict[@]}" "$corpus" >"$log" 2>&1; then
        status=FAILED
        failed+=("$name")
    fi
    ran=$((ran + 1))

    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    printf 'fuzz: %-18s %-6s execs=%s cov=%s features=%s corpus=%s (%ss)\n' \
        "$name" "$status" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "$secs"
    if [ "$status" != ok ]; then
        # The sanitizer report and the crashing input's location.
        grep -E 'ERROR|SUMMARY|Test unit written|^ +#[0-9]+ ' "$log" | head -40 >&2 || tail -40 "$log" >&2
    fi
done

if [ "$ran" -eq 0 ] && [ ${#failed[@]} -eq 0 ]; then
    echo "fuzz: no targets matched" >&2
    exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all $ran targets ran ${secs}s without a crash"
