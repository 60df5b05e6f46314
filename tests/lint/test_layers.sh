#!/usr/bin/env bash
# The layers stay honest: src/base and src/proto do no I/O, read no clock, draw
# no randomness and read no environment; src/proto avoids the unsafe string
# functions (STYLE.md rule 15).
set -u
src="${2:-$(cd "$(dirname "$0")/../.." && pwd)}/src"
fail=0
bad=$(grep -rnE '#include *<(uv\.h|openssl/ssl\.h|sqlite3\.h|sys/socket\.h|stdio\.h|unistd\.h|fcntl\.h|time\.h|sys/time\.h|netinet/[a-z]+\.h|arpa/inet\.h)>|clock_gettime|gettimeofday|[^_a-z]time\(|[^_a-z]s?rand(om)?\(|getrandom|getenv\(|fopen\(|printf\(' \
      "$src/base" "$src/proto" | grep -v 'snprintf\|vsnprintf' )
# base/log.c and base/config.c format text with (v)snprintf into memory: allowed.
bad=$(echo "$bad" | grep -vE '^\S*src/base/(log|config)\.c:[0-9]+:#include <stdio\.h>' | grep -vE '^\S*src/proto/coap/coap_link\.c:[0-9]+:#include <stdio\.h>' | sed '/^$/d')
if [ -n "$bad" ]; then
  echo "I/O, clock, randomness or environment in src/base or src/proto:"; echo "$bad"; fail=1
fi
unsafe=$(grep -rnE '[^a-z_](sprintf|strcpy|strcat|strtok|atoi|atol|sscanf|gets)\(' "$src/proto" | grep -v snprintf)
if [ -n "$unsafe" ]; then
  echo "unsafe string functions in src/proto:"; echo "$unsafe"; fail=1
fi
upward=$(grep -rnE '#include "(net|server|store|cli|device|compare)/' "$src/base" "$src/proto")
if [ -n "$upward" ]; then
  echo "src/base or src/proto includes a higher layer:"; echo "$upward"; fail=1
fi
if [ $fail -eq 0 ]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $fail
