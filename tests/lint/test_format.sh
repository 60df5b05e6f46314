#!/usr/bin/env bash
# The layout is clang-format's (.clang-format); `make format` fixes it.
set -u
root="${2:-$(cd "$(dirname "$0")/../.." && pwd)}"
command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 77; }
cd "$root"
bad=()
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find src include tests fuzz bench -name '*.[ch]'); do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "not clang-formatted (run 'make format'): ${bad[*]}"; echo "0 passed, 1 failed"; exit 1
fi
echo "1 passed, 0 failed"
