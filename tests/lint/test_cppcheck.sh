#!/usr/bin/env bash
# cppcheck over src/ and bench/: warnings, portability and performance checks
# must stay clean.
set -u
root="${2:-$(cd "$(dirname "$0")/../.." && pwd)}"
command -v cppcheck >/dev/null || { echo "cppcheck not installed"; exit 77; }
out=$(cppcheck --quiet --enable=warning,performance,portability --error-exitcode=1 \
      --inline-suppr --std=c11 -D__linux__ -DM2M_VERSION_STRING='"0"' \
      -I "$root/include" -I "$root/src" \
      --suppress=missingIncludeSystem \
      "$root/src" "$root/bench" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then echo "$out"; echo "0 passed, 1 failed"; exit 1; fi
echo "1 passed, 0 failed"
