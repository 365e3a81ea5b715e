#!/usr/bin/env bash
# Pages' event streams (Server-Sent Events) against WebSockets, one sitting, alternating:
# idle memory per connection (N connections held, RSS before and after) and server CPU per
# pushed message (M pushes through the text port to 1,000 clients), for each kind.
#
#   bench/sse.sh [N] [M]      defaults: 19000 200000
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-19000}
m=${2:-200000}
cargo build --release --quiet --workspace --bins
. bench/single-node.sh
for round in 1 2; do
    for kind in websocket sse; do
        flag=""; [ "$kind" = sse ] && flag="--sse"
        echo "== round $round: $kind, $n idle"
        start_pushd ./target/release/pushd
        # shellcheck disable=SC2086 # $flag is one word or none
        timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" $flag idle -n "$n" --hold 5s | grep -E 'RSS|connect'
        echo "== round $round: $kind, $m pushes to 1000"
        start_pushd ./target/release/pushd
        # shellcheck disable=SC2086
        timeout 600 ./target/release/pushbench --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" $flag push -n 1000 -m "$m" -k 4 -p 64 | grep -E 'CPU|rate|lost|p99 '
    done
done
stop_pushd
