#!/usr/bin/env bash
# The main job on a fresh machine: build the test guest when it is missing,
# run scenarios/testguest.yaml in the lab (an isolated network namespace with
# firstboot's simulated internet; nothing leaves the machine), and show what
# the guest said, step by step. Called by `make demo` after `make build`; run
# as root after scripts/provision.sh.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=$repo/bin/firstboot
[ -x "$bin" ] || { echo "demo: $bin missing: run make build" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (network namespace, libvirtd, capture): sudo make demo" >&2
  exit 1
fi

echo "demo: test guest image (built once, then reused)"
"$bin" image build testguest --agent "$repo/bin/firstboot-guest"
echo
echo "demo: running scenarios/testguest.yaml"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"$bin" run scenarios/testguest.yaml | tee "$out" || status=$?
run=$(sed -n 's/^run directory: //p' "$out")
if [ -z "$run" ]; then
  echo "demo: the run did not start (exit $status)" >&2
  exit "$status"
fi
echo
"$bin" analyze "$run" --format table
echo
echo "demo: everything is in $run:"
ls -1 "$run" | sed 's/^/  /'
echo "demo: open $run/report.html in a browser; report.md is the same as Markdown."
exit "$status"
