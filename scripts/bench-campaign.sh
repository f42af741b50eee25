#!/usr/bin/env bash
# Benchmarks campaigns (make bench runs it after scripts/bench.sh):
#   1. the queue's scheduling overhead per job (SQLite, runs that take no time);
#   2. a 10-run test-guest campaign's wall time against the same 10 runs one
#      after another (`firstboot run`), on this host.
#
#   BENCH_CAMPAIGN=0    skip part 2 (about 10 minutes on 2 cores under TCG)
#   BENCH_CAMPAIGN_N=10 runs in part 2
#
# Part 2 needs root and the test guest image (firstboot image build testguest).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bin=$repo/bin/firstboot
[ -x "$bin" ] || { echo "bench-campaign: $bin missing: run make build" >&2; exit 1; }

echo "bench-campaign: scheduling overhead (50 jobs per execution, SQLite queue, 2 at once) ..." >&2
go test -run '^$' -bench SchedulingOverhead -benchtime 3x ./scenarios/campaign |
  awk '/ms\/job/ {for (i = 1; i <= NF; i++) if ($i == "ms/job") printf "%-26s %8.1f ms per job\n", "campaign scheduling", $(i-1)}'

[ "${BENCH_CAMPAIGN:-1}" = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "bench-campaign: the 10-run comparison boots VMs: run as root (or BENCH_CAMPAIGN=0)" >&2
  exit 1
fi
n=${BENCH_CAMPAIGN_N:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/bench.yaml" <<YAML
name: bench-campaign
scenarios:
  - path: $repo/scenarios/testguest.yaml
repetitions: $n
YAML
secs() { date +%s.%N; }

echo "bench-campaign: $n test-guest runs one after another ..." >&2
t0=$(secs)
for i in $(seq "$n"); do
  "$bin" run scenarios/testguest.yaml --runs-dir "$work/seq" >"$work/seq.log" 2>&1 ||
    { echo "bench-campaign: run $i failed:" >&2; tail -20 "$work/seq.log" >&2; exit 1; }
done
seq=$(awk -v a="$t0" -v b="$(secs)" 'BEGIN {print b - a}')

echo "bench-campaign: the same $n runs as a campaign ..." >&2
t0=$(secs)
"$bin" campaign run "$work/bench.yaml" --runs-dir "$work/camp" >"$work/camp.log" 2>&1 ||
  { echo "bench-campaign: campaign failed:" >&2; tail -20 "$work/camp.log" >&2; exit 1; }
camp=$(awk -v a="$t0" -v b="$(secs)" 'BEGIN {print b - a}')

awk -v n="$n" -v s="$seq" -v c="$camp" -v cpus="$(nproc)" 'BEGIN {
  printf "%-26s %7.1f s (%.1f s per run)\n", n " runs one by one", s, s / n
  printf "%-26s %7.1f s (%.1f s per run; %.2fx faster on %d CPUs)\n", n "-run campaign", c, c / n, s / c, cpus }'
