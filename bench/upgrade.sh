#!/usr/bin/env bash
# A live upgrade under load: N plain clients (default 19,000) receive a stream of pushes
# (default 20,000/s) while `pushctl upgrade` hands them to a new pushd process.
#
#   bench/upgrade.sh [CLIENTS] [RATE]
#
# Prints pushbench's report: connections closed, pushes answered ok and how many arrived
# once and in order, the longest pause in the stream of receipts, the hand-over's duration.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-19000}
rate=${2:-20000}
cargo build --release --quiet --workspace --bins
. bench/single-node.sh
new_pid=""
trap 'stop_pushd; [ -n "$new_pid" ] && kill "$new_pid" 2>/dev/null; rm -rf "$dir"' EXIT
start_pushd ./target/release/pushd --heartbeat 0 --ping-interval 0
./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
    upgrade -n "$clients" --rate "$rate" --before 5s --after 5s "${@:3}"
new_pid=$(grep -o 'new_pid=[0-9]*' "$dir/pushd.log" | tail -1 | cut -d= -f2)
grep -E 'upgrade|took over' "$dir/pushd.log" | sed 's/^[^ ]* *//' >&2
