#!/usr/bin/env bash
# docs/configuration.md documents every key, with the default the code has.
BUILD=$1
. "$2/tests/support/lib.sh"
doc="$2/docs/configuration.md"
while IFS= read -r line; do
  case "$line" in
    "| \`"*) key=$(cut -d'`' -f2 <<<"$line")
             check "documented: $key" grep -qF -- "$line" "$doc" ;;
  esac
done < <("$M2MKIT" serve --config-reference)
finish
