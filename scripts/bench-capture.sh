#!/usr/bin/env bash
# Capture benchmark: firstboot's capture (the hidden `firstboot capture`
# command, the same lab/capture code a run uses on a machine's tap) against
# `tcpdump -w`, one after the other on the same link: two network namespaces
# joined by a veth pair, iperf3 sending from one, the capture on the
# receiving side. Prints packets/s, packets the kernel received and dropped,
# and the capture process's CPU: all of it (user + system, as GNU time
# reports it, in 10 ms steps), and the part spent while the load ran (from
# just before it starts to a second after it ends, in nanoseconds from the
# scheduler's per-thread counters), which leaves out setting up and stopping.
# Called by scripts/bench.sh (make bench); runs alone too. Needs root.
#
#   BENCH_CAPTURE_SECONDS=10  seconds of traffic per load
#   BENCH_CAPTURE_RUNS=1      repeat the whole table; the summary gives best and worst
#   BENCH_CAPTURE_LOADS="..." a subset of: idle tcp-1g udp64-50k udp64-100k udp64-200k udp64-max udp1472-980m
#                             (idle: no traffic, the cost of running a capture at all)
#   BENCH_CAPTURE_TOOLS="firstboot tcpdump"
#   FIRSTBOOT_BIN=bin/firstboot
#   FIRSTBOOT_BEFORE_BIN=FILE another firstboot build (e.g. main's) measured as tool "before",
#                             interleaved with the others so both see the same machine load
#
# Nothing leaves the machine: both namespaces are made here, with no route out.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${FIRSTBOOT_BIN:-$repo/bin/firstboot}
secs=${BENCH_CAPTURE_SECONDS:-10}
runs=${BENCH_CAPTURE_RUNS:-1}
loads=${BENCH_CAPTURE_LOADS:-idle tcp-1g udp64-50k udp64-100k udp64-200k udp64-max udp1472-980m}
tools=${BENCH_CAPTURE_TOOLS:-firstboot tcpdump}
before=${FIRSTBOOT_BEFORE_BIN:-}
[ -n "$before" ] && tools="before $tools"

[ "$(id -u)" = 0 ] || { echo "bench-capture: needs root (network namespaces, packet capture)" >&2; exit 1; }
[ -x "$bin" ] || { echo "bench-capture: $bin missing: run make build" >&2; exit 1; }
for tool in ip iperf3 tcpdump pgrep; do
  command -v "$tool" >/dev/null || { echo "bench-capture: $tool missing: run scripts/provision.sh" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench-capture: /usr/bin/time (GNU time) missing: run scripts/provision.sh" >&2; exit 1; }

# Captures go to the disk (not tmpfs), like a run's.
work=$(mktemp -d /var/tmp/fbbench-capture.XXXXXX)
snd=fbbench-snd-$$
rcv=fbbench-rcv-$$
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$snd" 2>/dev/null || true
  ip netns del "$rcv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$snd"
ip netns add "$rcv"
for ns in "$snd" "$rcv"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done
ip -n "$rcv" link add cap0 type veth peer name snd0 netns "$snd"
ip -n "$rcv" addr add 10.201.0.1/24 dev cap0
ip -n "$snd" addr add 10.201.0.2/24 dev snd0
ip -n "$rcv" link set cap0 up
ip -n "$snd" link set snd0 up

# iperf3 arguments per load (-b counts UDP payload bits: packets/s × length × 8).
iperf_args() {
  case $1 in
    idle) ;;
    tcp-1g) echo "-b 1G" ;;
    udp64-50k) echo "-u -l 64 -b $((50000 * 64 * 8))" ;;
    udp64-100k) echo "-u -l 64 -b $((100000 * 64 * 8))" ;;
    udp64-200k) echo "-u -l 64 -b $((200000 * 64 * 8))" ;;
    udp64-max) echo "-u -l 64 -b 0" ;;
    udp1472-980m) echo "-u -l 1472 -b 980M" ;;
    *) echo "bench-capture: unknown load $1" >&2; exit 1 ;;
  esac
}

# cpu_ns PID: CPU time of all the process's threads so far, in ns.
cpu_ns() { awk '{ s += $1 } END { printf "%.0f", s }' /proc/"$1"/task/*/schedstat; }

# capture TOOL LOAD: one measurement; sets $pps, $recv, $drop, $cpu (s) and
# $load_cpu (s, while the load ran).
capture() {
  local tool=$1 load=$2 out=$work/cap err=$work/err tpid cpid spid i u s line cpu0 cpu1
  rm -f "$out" "$err" "$work/time"
  spid=
  if [ "$load" != idle ]; then
    ip netns exec "$rcv" iperf3 -s -1 -B 10.201.0.1 >/dev/null 2>&1 &
    spid=$!
    pids+=("$spid")
  fi
  case $tool in
    firstboot) /usr/bin/time -f '%U %S' -o "$work/time" ip netns exec "$rcv" "$bin" capture cap0 --out "$out" >"$work/stdout" 2>"$err" & ;;
    before) /usr/bin/time -f '%U %S' -o "$work/time" ip netns exec "$rcv" "$before" capture cap0 --out "$out" >"$work/stdout" 2>"$err" & ;;
    tcpdump) /usr/bin/time -f '%U %S' -o "$work/time" ip netns exec "$rcv" tcpdump -Z root -n -i cap0 -w "$out" >"$work/stdout" 2>"$err" & ;;
  esac
  tpid=$!
  pids+=("$tpid")
  for i in $(seq 100); do
    grep -qE '(^capturing|listening on)' "$err" 2>/dev/null && break
    sleep 0.1
  done
  grep -qE '(^capturing|listening on)' "$err" || { echo "bench-capture: $tool did not start:" >&2; cat "$err" >&2; exit 1; }
  sleep 0.5 # the iperf3 server is listening by now
  # GNU time's child: ip netns exec has become the capture.
  cpid=$(pgrep -P "$tpid")
  cpu0=$(cpu_ns "$cpid")
  if [ "$load" = idle ]; then
    sleep "$secs"
  else
    # shellcheck disable=SC2046
    ip netns exec "$snd" iperf3 -c 10.201.0.1 -t "$secs" $(iperf_args "$load") >"$work/iperf" 2>&1 ||
      { echo "bench-capture: iperf3 failed:" >&2; cat "$work/iperf" >&2; exit 1; }
  fi
  sleep 1
  cpu1=$(cpu_ns "$cpid")
  # GNU time does not pass signals on: interrupt the capture itself, then
  # wait for time to report its CPU.
  kill -INT "$cpid"
  wait "$tpid" || { echo "bench-capture: $tool failed:" >&2; cat "$err" >&2; exit 1; }
  [ -z "$spid" ] || wait "$spid" 2>/dev/null || true
  pids=()
  read -r u s <"$work/time"
  case $tool in
    firstboot | before)
      line=$(cat "$work/stdout")
      recv=$(awk '{for (i = 1; i < NF; i++) if ($i == "received") print $(i+1)}' <<<"$line")
      drop=$(awk '{for (i = 1; i < NF; i++) if ($i == "dropped") print $(i+1)}' <<<"$line")
      ;;
    tcpdump)
      recv=$(awk '/packets received by filter/ {print $1}' "$err")
      drop=$(awk '/packets dropped by kernel/ {print $1}' "$err")
      ;;
  esac
  pps=$(awk -v r="$recv" -v t="$secs" 'BEGIN { printf "%.0f", r / t }')
  cpu=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
  load_cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
  mb=$(awk -v b="$(stat -c %s "$out")" 'BEGIN { printf "%.0f", b / 1e6 }')
}

echo "bench-capture: $secs s per load, $runs run(s); machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$work/results
: >"$results"
printf '%-14s %-10s %9s %10s %9s %7s %6s %7s %7s\n' load tool pkt/s received dropped CPU_s CPU% load% file_MB
for run in $(seq "$runs"); do
  for load in $loads; do
    for tool in $tools; do
      capture "$tool" "$load"
      echo "$load $tool $pps $recv $drop $cpu $load_cpu" >>"$results"
      awk -v l="$load" -v t="$tool" -v p="$pps" -v r="$recv" -v d="$drop" -v c="$cpu" -v lc="$load_cpu" -v s="$secs" -v m="$mb" 'BEGIN {
        printf "%-14s %-10s %9d %10d %9d %7.2f %5.1f%% %6.2f%% %7d\n", l, t, p, r, d, c, 100 * c / s, 100 * lc / s, m }'
    done
  done
done

if [ "$runs" -gt 1 ]; then
  echo
  echo "== summary over $runs runs (best and worst of each; CPU% = CPU seconds per second of traffic; load% = the same for the CPU spent while the load ran)"
  printf '%-14s %-10s %19s %19s %15s %15s\n' load tool pkt/s dropped CPU% load%
  for load in $loads; do
    for tool in $tools; do
      awk -v l="$load" -v t="$tool" -v s="$secs" '$1 == l && $2 == t {
          n++; if (n == 1 || $3 < pl) pl = $3; if ($3 > ph) ph = $3
          if (n == 1 || $5 < dl) dl = $5; if ($5 > dh) dh = $5
          if (n == 1 || $6 < cl) cl = $6; if ($6 > ch) ch = $6
          if (n == 1 || $7 < ll) ll = $7; if ($7 > lh) lh = $7 }
        END { printf "%-14s %-10s %9d-%-9d %9d-%-9d %6.1f-%-6.1f %6.2f-%-6.2f\n", l, t, pl, ph, dl, dh, 100 * cl / s, 100 * ch / s, 100 * ll / s, 100 * lh / s }' "$results"
    done
  done
fi
