#!/usr/bin/env bash
# A push to a group of N online members against a broadcast to the same N connections, in
# one sitting, alternating (broadcast, group, broadcast, group): server CPU per delivered
# message and delivered rate for each, and the membership adds' rate and CPU per change; then a
# group of 10 against 10 uid pushes; last, group pushes while memberships churn.
#
#   bench/groups.sh [N] [PUSHES]      defaults: 10000 20
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
pushes=${2:-20}
cargo build --release --quiet --workspace --bins
. bench/single-node.sh
for round in 1 2; do
    for kind in broadcast group; do
        flag=""; [ "$kind" = group ] && flag="--group"
        start_pushd ./target/release/pushd
        echo "== round $round: $kind"
        timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" broadcast -n "$n" -b "$pushes" $flag |
            grep -E 'CPU|rate|second'
    done
done

# A group of 10 against 10 uid pushes: the same 10 clients get the same number of messages
# through the text port (20,000 group lines, or 200,000 uid lines).
for round in 1 2; do
    for kind in uids group; do
        flag=""; [ "$kind" = group ] && flag="--group"
        start_pushd ./target/release/pushd
        echo "== round $round: 10 clients, $kind"
        timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" fanout -n 10 -p 20000 $flag | grep -E 'CPU|rate|delivered  '
    done
done
echo "== group of $n with 20000 membership changes a second meanwhile"
start_pushd ./target/release/pushd
timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
    --pid "$pushd_pid" broadcast -n "$n" -b "$pushes" --group --text-port --churn 20000 |
    grep -E 'CPU|rate|changes|last delivery p99 '
stop_pushd
