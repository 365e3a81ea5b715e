#!/usr/bin/env bash
# Runs the measurements behind docs/PERFORMANCE.md and prints their medians.
#
#   bench/run-matrix.sh [RESULTS.jsonl]
#
# Builds release binaries, then for every run starts a fresh pushd on free
# loopback ports with a private admin socket, runs one pushbench
# scenario against it, and appends pushbench's JSON report (plus the pushd
# options used) to RESULTS.jsonl. Every run is bounded by `timeout`.
# Takes about 15 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-results.jsonl}
runs=${RUNS:-3}
cargo build --release --quiet
: > "$results"
# shellcheck source=bench/single-node.sh
. bench/single-node.sh

# run LABEL "PUSHD OPTIONS" PUSHBENCH ARGS...
run() {
    local label=$1 options=$2
    shift 2
    # shellcheck disable=SC2086
    start_pushd ./target/release/pushd $options
    local report
    report=$(timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
        --pid "$pushd_pid" --json "$@")
    echo "{\"label\":\"$label\",\"pushd\":\"$options\",\"report\":$report}" >> "$results"
    echo "$label: done" >&2
}

for n in 1000 5000 10000 19000; do
    for _ in $(seq "$runs"); do run "idle-rss-$n" "" idle -n "$n" --hold 1s; done
done
for _ in $(seq "$runs"); do run "idle-cpu-19000" "" idle -n 19000 --hold 60s; done
run "idle-cpu-19000-no-pings" "--ping-interval 0" idle -n 19000 --hold 30s
for _ in $(seq "$runs"); do run "push-10000" "" push -n 10000 -m 1000000 -k 8 -p 64; done
for n in 1000 5000 19000; do run "push-$n" "" push -n "$n" -m 1000000 -k 8 -p 64; done
for _ in $(seq "$runs"); do run "push-10000-at-50k" "" push -n 10000 -m 500000 -k 8 -p 64 --rate 50000; done
run "push-10000-at-10k" "" push -n 10000 -m 200000 -k 8 -p 64 --rate 10000
for n in 1000 5000 10000 19000; do
    for _ in $(seq "$runs"); do run "broadcast-$n" "" broadcast -n "$n" -b 20; done
done
for n in 1000 5000 10000; do run "admin-$n" "" admin -n "$n" -r 20; done
for _ in $(seq "$runs"); do run "admin-19000" "" admin -n 19000 -r 20; done

python3 - "$results" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[row["label"]].append({f["name"]: f["value"] for f in row["report"]["figures"]})
for label, reports in runs.items():
    print(f"{label} ({len(reports)} run{'s' if len(reports) > 1 else ''}, median)")
    for name in reports[0]:
        values = [r[name] for r in reports if name in r]
        print(f"  {name:40} {statistics.median(values):14.3f}   runs: {', '.join(f'{v:.3f}' for v in values)}")
PY
