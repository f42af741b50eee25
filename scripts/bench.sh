#!/usr/bin/env bash
# Benchmarks `firstboot analyze` against tcpdump and tshark on the same capture,
# then firstboot's capture against `tcpdump -w` at line rate
# (scripts/bench-capture.sh). Called by `make bench` after `make build`.
#
#   BENCH_PCAP=F     use this capture instead of a generated one
#   BENCH_SIZE=100MB size of the generated capture (cached, reused when present)
#   BENCH_CACHE=DIR  where generated captures are kept (default ~/.cache/firstboot-bench)
#   BENCH_BIG=1      also measure peak memory on a ~1 GB capture (10 time-shifted copies)
#   BENCH_TSHARK=0   skip tshark (it can take minutes on 100 MB)
#   BENCH_RUNS=3     runs of firstboot and tcpdump; the fastest counts (tshark runs once)
#   BENCH_CAPTURE=0  skip the capture benchmark (BENCH_CAPTURE_* settings: see bench-capture.sh)
#
# Generating a capture needs root (network namespaces, tcpdump): see internal/trafficgen.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=$repo/bin/firstboot
[ -x "$bin" ] || { echo "bench: $bin missing: run make build" >&2; exit 1; }
for tool in tcpdump tshark capinfos editcap mergecap taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing: run scripts/provision.sh" >&2; exit 1; }
done
if [ ! -x /usr/bin/time ]; then
  echo "bench: /usr/bin/time (GNU time) missing: apt-get install time (scripts/provision.sh)" >&2
  exit 1
fi

size=${BENCH_SIZE:-100MB}
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/firstboot-bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pcap=${BENCH_PCAP:-}
if [ -z "$pcap" ]; then
  mkdir -p "$cache"
  pcap=$cache/trafficgen-$size.pcap
  if [ ! -s "$pcap" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "bench: generating a capture needs root (network namespaces); run as root or set BENCH_PCAP" >&2
      exit 1
    fi
    echo "bench: generating $size of real traffic into $pcap (once; cached) ..."
    go run ./internal/trafficgen/cmd/trafficgen -out "$pcap.tmp" -size "$size"
    mv "$pcap.tmp" "$pcap"
  fi
fi
[ -s "$pcap" ] || { echo "bench: capture $pcap missing or empty" >&2; exit 1; }
pcap=$(realpath "$pcap")
# Measure from a scratch directory: a firstboot.yaml (or any file named
# firstboot) in the caller's directory must not change what is measured.
cd "$work"

# packets FILE: packet count as capinfos reads it.
packets() { capinfos -M -c "$1" | awk -F': *' '/Number of packets/ {print $2}'; }

# measure RUNS NAME CMD...: runs CMD RUNS times with GNU time; sets $wall to
# the fastest wall time (s), $cpu to that run's CPU time (user + system, s)
# and $rss to the largest peak RSS (MB). The best of several runs is the
# honest number on a shared, noisy machine.
measure() {
  local runs=$1 name=$2 i w u s k; shift 2
  wall= cpu= rss_kb=0
  for i in $(seq "$runs"); do
    echo "bench: $name (run $i/$runs) ..." >&2
    if ! /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err"; then
      echo "bench: $name failed:" >&2; tail -20 "$work/err" >&2; exit 1
    fi
    read -r w u s k <"$work/time"
    if [ -z "$wall" ] || awk -v a="$w" -v b="$wall" 'BEGIN {exit !(a < b)}'; then
      wall=$w cpu=$(awk -v u="$u" -v s="$s" 'BEGIN {print u + s}')
    fi
    [ "$k" -gt "$rss_kb" ] && rss_kb=$k
  done
  rss=$(awk -v k="$rss_kb" 'BEGIN {printf "%.1f", k/1024}')
}

# report NAME BYTES PACKETS: one result line from $wall, $cpu and $rss.
report() {
  awk -v n="$1" -v b="$2" -v p="$3" -v w="$wall" -v c="$cpu" -v r="$rss" 'BEGIN {
    if (w < 0.01) w = 0.01
    printf "%-26s %7.2f s %6.2f s CPU %8.1f MB/s %10.0f pkt/s %8.1f MB peak RSS\n", n, w, c, b/1e6/w, p/w, r }'
}

bytes=$(stat -c %s "$pcap")
npkts=$(packets "$pcap")
echo "bench: capture $pcap: $((bytes / 1000000)) MB, $npkts packets ($(awk -v p="$npkts" -v b="$bytes" 'BEGIN{printf "%.0f", p/(b/1e8)}') packets per 100 MB)"
echo "bench: machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) (shared machines make wall times noisy)"
echo

runs=${BENCH_RUNS:-3}
# With more than one core, firstboot reads and writes on goroutines beside the
# analysis; pinned to one core it runs them in turn (the per-core goal).
measure "$runs" "firstboot analyze" "$bin" analyze "$pcap" --out "$work/analysis"
fb_wall=$wall fb_rss=$rss
results=$(report "firstboot analyze ($(nproc) cores)" "$bytes" "$npkts")
measure "$runs" "firstboot analyze, one core" taskset -c 0 env GOMAXPROCS=1 "$bin" analyze "$pcap" --out "$work/analysis1"
one_wall=$wall
results+=$'\n'$(report "firstboot analyze (1 core)" "$bytes" "$npkts")

measure "$runs" "tcpdump -nn -r" sh -c 'tcpdump -nn -r "$1" >/dev/null' sh "$pcap"
td_wall=$wall
results+=$'\n'$(report "tcpdump -nn -r" "$bytes" "$npkts")

ts_wall=
if [ "${BENCH_TSHARK:-1}" != 0 ]; then
  measure 1 "tshark -T fields (slow)" tshark -r "$pcap" -n -T fields -e dns.qry.name \
    -e tls.handshake.extensions_server_name -e tls.handshake.ja3 -e http.host
  ts_wall=$wall
  results+=$'\n'$(report "tshark -T fields" "$bytes" "$npkts")
fi

big_line=
if [ "${BENCH_BIG:-0}" = 1 ]; then
  big=$cache/trafficgen-$size-x10.pcap
  if [ ! -s "$big" ]; then
    mkdir -p "$cache"
    echo "bench: building ~1 GB capture $big from 10 time-shifted copies ..." >&2
    dur=$(capinfos -M -u "$pcap" | awk -F': *' '/Capture duration/ {print int($2) + 1}')
    parts=()
    for i in $(seq 0 9); do
      editcap -t $((i * (dur + 1))) "$pcap" "$work/part$i.pcap"
      parts+=("$work/part$i.pcap")
    done
    mergecap -a -F pcap -w "$big.tmp" "${parts[@]}"
    rm -f "${parts[@]}"
    mv "$big.tmp" "$big"
  fi
  big_bytes=$(stat -c %s "$big")
  big_pkts=$(packets "$big")
  measure 1 "firstboot analyze (1 GB)" "$bin" analyze "$big" --out "$work/analysis-big"
  big_rss=$rss
  big_line=$(report "firstboot analyze 1GB" "$big_bytes" "$big_pkts")
  results+=$'\n'$big_line
fi

echo
echo "== results ($((bytes / 1000000)) MB, $npkts packets)"
echo "$results"
echo
echo "== goals"
awk -v p="$npkts" -v w="$one_wall" -v m="$fb_wall" -v n="$(nproc)" 'BEGIN { if (w < 0.01) w = 0.01; if (m < 0.01) m = 0.01; r = p/w/1e6
  printf "packets/s, 1 core  %.2fM  (goal >= 1M: %s); with %d cores %.2fM\n", r, (r >= 1 ? "met" : "NOT met"), n, p/m/1e6 }'
awk -v a="$fb_wall" -v o="$one_wall" -v t="$td_wall" 'BEGIN { if (a < 0.01) a = 0.01; if (o < 0.01) o = 0.01; r = t/a
  printf "speed vs tcpdump   %.2fx (goal >= 2x: %s); on 1 core %.2fx\n", r, (r >= 2 ? "met" : "NOT met"), t/o }'
if [ -n "$ts_wall" ]; then
  awk -v a="$fb_wall" -v t="$ts_wall" 'BEGIN { if (a < 0.01) a = 0.01; r = t/a
    printf "speed vs tshark    %.1fx (goal >= 100x: %s)\n", r, (r >= 100 ? "met" : "NOT met") }'
fi
if [ -n "$big_line" ]; then
  awk -v m="$big_rss" 'BEGIN { printf "peak RSS on 1 GB   %.0f MB (goal < 256 MB: %s)\n", m, (m < 256 ? "met" : "NOT met") }'
else
  echo "peak RSS on 1 GB   not measured (BENCH_BIG=1); on this capture: ${fb_rss} MB"
fi

echo
echo "== go benchmarks: go test -run '^\$' -bench . -benchmem ./analyzer/..."
# BenchmarkAnalyzeFile (analyzer/crosscheck) reads the same capture.
cd "$repo"
BENCH_PCAP=$pcap go test -run '^$' -bench . -benchmem ./analyzer/...

if [ "${BENCH_CAPTURE:-1}" != 0 ]; then
  echo
  echo "== capture at line rate: scripts/bench-capture.sh"
  if [ "$(id -u)" = 0 ]; then
    scripts/bench-capture.sh
  else
    echo "skipped: it needs root (network namespaces, packet capture)"
  fi
fi
