#!/usr/bin/env bash
# A push to a group of N online members against a broadcast to the same N connections, in
# one sitting, alternating (broadcast, group, broadcast, group): server CPU per delivered
# message and delivered rate for each, and the membership adds' rate and CPU per change.
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
stop_pushd
