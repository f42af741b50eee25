#!/usr/bin/env bash
# Demo: record a little real traffic (DHCP, NTP, DNS, HTTP, HTTPS, QUIC from
# real clients inside private network namespaces; nothing leaves the machine)
# and analyse it. Called by `make demo` after `make build`; run as root after
# scripts/provision.sh.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=$repo/bin/firstboot
[ -x "$bin" ] || { echo "demo: $bin missing: run make build" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then
  echo "demo: needs root (network namespaces and tcpdump): sudo make demo" >&2
  exit 1
fi

run=runs/demo-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$run"
echo "demo: generating real traffic into $run/capture.pcap ..."
go run ./internal/trafficgen/cmd/trafficgen -out "$run/capture.pcap" -summary "$run/trafficgen.json"
echo
"$bin" analyze "$run/capture.pcap" --out "$run" --format table
echo
echo "demo: outputs in $repo/$run:"
ls -1 "$run" | sed 's/^/  /'
echo "demo: analysis.json is the full result; *.log are Zeek-style logs; trafficgen.json is what the clients did."
