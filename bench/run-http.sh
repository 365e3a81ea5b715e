#!/usr/bin/env bash
# Pushes over the HTTP API against the text port, in one sitting, alternating.
#
#   bench/run-http.sh [RESULTS.jsonl]
#
# For every round, a fresh pushd (target/release/pushd, --http-listen on a free
# port) takes MESSAGES pushes (default 200k) to 10,000 clients, once through the
# text port (K=4 connections x P=64 in flight) and once through POST /v1/push
# (K=4 keep-alive connections, each one request of P=64 lines at a time), text
# first. ROUNDS (default 3) sets the number of pairs. Every run is bounded by
# `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-http.jsonl}
rounds=${ROUNDS:-3}
messages=${MESSAGES:-200000}
bin=./target/release/pushd
bench=./target/release/pushbench
[ -x "$bench" ] && [ -x "$bin" ] || cargo build --release --quiet --workspace
: > "$results"
# shellcheck source=bench/single-node.sh
. bench/single-node.sh

for _ in $(seq "$rounds"); do
    for via in text http; do
        start_pushd "$bin" --http-listen 127.0.0.1:0
        http=$(grep -o 'http=[^ ]*' "$dir/pushd.log" | head -1 | cut -d= -f2)
        extra=()
        [ "$via" = http ] && extra=(--http "$http")
        report=$(timeout 600 "$bench" --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" --json push -n 10000 -m "$messages" -k 4 -p 64 "${extra[@]}")
        echo "{\"via\":\"$via\",\"report\":$report}" >> "$results"
        echo "$via: done" >&2
    done
done

python3 - "$results" <<'PY'
import json, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[row["via"]].append({f["name"]: f["value"] for f in row["report"]["figures"]})
names = list(runs["text"][0])
for name in names:
    t = [r[name] for r in runs["text"] if name in r]
    h = [r[name] for r in runs["http"] if name in r]
    print(f"  {name:36} text: {', '.join(f'{v:.3f}' for v in t):28} http: {', '.join(f'{v:.3f}' for v in h)}")
PY
