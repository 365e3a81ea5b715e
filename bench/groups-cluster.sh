#!/usr/bin/env bash
# A group push across three nodes (docs/PERFORMANCE.md, "Groups in cluster mode"): one
# redis-server (Unix socket, persistence off), nodes a, b, c; N clients spread over the three,
# all members of one group; PUSHES group lines through a's text port, each waited for at every
# client. Reports, per push: bus messages (PUBLISH calls, those of scripts included), Redis CPU
# (the whole process, from /proc) and script time (INFO commandstats); server CPU per
# delivered message over the three nodes; the memberships' adds. Then, in the same sitting,
# the same N clients on one node without --cluster: its group push and its broadcast. Last, the
# cluster's group pushes again while CHURN other memberships change per second (default 5000).
#
#   bench/groups-cluster.sh [N] [PUSHES]      defaults: 9000 50
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-9000}
pushes=${2:-50}
churn=${CHURN:-5000}
# shellcheck source=bench/nodes.sh
. bench/nodes.sh
start_redis
cluster=(--cluster "redis+unix://$dir/redis.sock")
start a 21234 25678 "${cluster[@]}" --node-name a
start b 22234 26678 "${cluster[@]}" --node-name b
start c 23234 27678 "${cluster[@]}" --node-name c
start solo 24234 28678
sleep 2
# shellcheck disable=SC2154 # pid_a, pid_b, pid_c and pid_solo are set by start
for round in 1 2; do
    echo "== round $round: group of $n across a, b, c, pushed through a's text port"
    timeout 600 "$bin/pushbench" --ws 127.0.0.1:21234 --also-ws 127.0.0.1:22234 \
        --also-ws 127.0.0.1:23234 --text 127.0.0.1:25678 --socket "$dir/a.sock" \
        --pid "$pid_a" --also-pid "$pid_b" --also-pid "$pid_c" --redis-socket "$dir/redis.sock" \
        --uid-prefix "r$round-" broadcast -n "$n" -b "$pushes" --group --text-port |
        grep -E 'CPU|rate|second|per push|last delivery'
    for kind in group broadcast; do
        flag=""; [ "$kind" = group ] && flag="--group --text-port"
        echo "== round $round: $kind of $n on one node (no --cluster)"
        # shellcheck disable=SC2086 # $flag is two words or none
        timeout 600 "$bin/pushbench" --ws 127.0.0.1:24234 --text 127.0.0.1:28678 \
            --socket "$dir/solo.sock" --pid "$pid_solo" --uid-prefix "s$round$kind-" \
            broadcast -n "$n" -b "$pushes" $flag | grep -E 'CPU|rate|last delivery'
        "$bin/pushctl" --socket "$dir/solo.sock" group drop bench-group >/dev/null || true
    done
    "$bin/pushctl" --socket "$dir/a.sock" group drop bench-group >/dev/null
done
echo "== group of $n across a, b, c, with $churn membership changes a second meanwhile"
timeout 600 "$bin/pushbench" --ws 127.0.0.1:21234 --also-ws 127.0.0.1:22234 \
    --also-ws 127.0.0.1:23234 --text 127.0.0.1:25678 --socket "$dir/a.sock" \
    --pid "$pid_a" --also-pid "$pid_b" --also-pid "$pid_c" --redis-socket "$dir/redis.sock" \
    --uid-prefix steady- broadcast -n "$n" -b "$pushes" --group --text-port --churn "$churn" |
    grep -E 'CPU|rate|changes|per push|last delivery p99 '
