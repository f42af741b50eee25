#!/usr/bin/env bash
# The main job on a fresh machine: build the test guest when it is missing,
# run scenarios/testguest.yaml in the lab (an isolated network namespace with
# firstboot's simulated internet; nothing leaves the machine), and show what
# the guest said, step by step. Called by `make demo` after provisioning and
# `make build`; runs as root.
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
"$bin" show "$run"
echo
echo "demo: open these (all in $run/):"
echo "  report.html     the report: timeline, per-step tables, expectations (a browser)"
echo "  capture.pcapng  every packet from power-on, in Wireshark; step starts and ends are packet comments"
echo "  *.log           Zeek-style logs: conn, dns, ssl, http, ntp, dhcp, fingerprint"
echo "demo: a real OS next: bin/firstboot image build debian-12 (about 8 minutes), then bin/firstboot run scenarios/debian-12.yaml"
exit "$status"
