#!/usr/bin/env bash
# The drain figure behind docs/PERFORMANCE.md ("A drain"):
#
#   bench/drain.sh [RESULTS.jsonl]            (CLIENTS=19000, OVER=30s, BIN=./target/release)
#
# Two pushd nodes on fixed loopback ports: A holds CLIENTS bound clients, then
# `pushctl drain --over OVER` runs on A and each client, at its 1012, reconnects
# to B at once (pushbench drain). Reported: closes by code, reconnects per second
# at B (busiest second against the mean over the window), the drain's time.
# Bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-drain.jsonl}
clients=${CLIENTS:-19000}
over=${OVER:-30s}
# shellcheck source=bench/nodes.sh
. bench/nodes.sh
start a 21234 25678
start b 22234 26678
report=$(timeout 600 "$bin/pushbench" --json --ws 127.0.0.1:21234 --socket "$dir/a.sock" \
    --uid-prefix d drain -n "$clients" --over "$over" --to 127.0.0.1:22234)
echo "$report" >> "$results"
echo "$report" | jq -r '.figures[] | "\(.name): \(.value) \(.unit)"'
