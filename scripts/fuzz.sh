#!/usr/bin/env bash
# Runs every go-fuzz target in the module for a short time each (default 5s).
# Targets are found, not listed, so a new parser's fuzzer runs without edits here.
set -euo pipefail
fuzztime=${1:-5s}
cd "$(dirname "$0")/.."
found=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name ($fuzztime)"
  # Go's fuzzer sometimes reports "context deadline exceeded" when -fuzztime
  # ends while it is still minimising a new input; that is the toolchain, not
  # a crash (a crash writes "Failing input written to …"). Try such a run once more.
  for attempt in 1 2; do
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg" >/tmp/fuzz.$$.log 2>&1; then
      break
    fi
    if [ "$attempt" = 2 ] || grep -q "Failing input written" /tmp/fuzz.$$.log || ! grep -q "context deadline exceeded" /tmp/fuzz.$$.log; then
      cat /tmp/fuzz.$$.log
      exit 1
    fi
    echo "fuzz: $name: the fuzzer timed out while minimising (no crash); running it again"
  done
  found=$((found + 1))
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $found targets ran without a crash"
