#!/usr/bin/env bash
# Pushes to one connection by its id against pushes to its uid, one sitting: CLIENTS clients,
# MESSAGES pushes through 4 text connections x 64 in flight, by uid (`{"uid": ...}`) then by
# connection id (`{"connection": ...}`), alternated twice on one node. Then the same on two
# nodes through Redis, clients on b and pushes into a (a connection line is carried out by
# every node, and ends its batch).
#
#   bench/connection.sh [CLIENTS] [MESSAGES] [CLUSTER_MESSAGES]   defaults: 2000 200000 20000
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-2000}
messages=${2:-200000}
cluster_messages=${3:-20000}
. bench/nodes.sh
show='^  (ok|fail|received|lost|delivered rate|server CPU|latency p50|latency p99) '
start one 7401 7402
for round in 1 2; do
    for to in uid connection; do
        echo "== one node, round $round, by $to"
        flag=(); [ "$to" = connection ] && flag=(--by-connection)
        timeout 600 "$bin/pushbench" --ws 127.0.0.1:7401 --text 127.0.0.1:7402 \
            --socket "$dir/one.sock" --pid "$pid_one" --uid-prefix "o$round$to-" \
            push -n "$clients" -m "$messages" -k 4 -p 64 "${flag[@]}" | grep -E "$show"
    done
done
kill "$pid_one"
start_redis
start a 7411 7412 --cluster "redis+unix://$dir/redis.sock" --node-name a
start b 7421 7422 --cluster "redis+unix://$dir/redis.sock" --node-name b
sleep 2
for to in uid connection; do
    echo "== two nodes, clients on b, pushes into a, by $to"
    flag=(); [ "$to" = connection ] && flag=(--by-connection)
    timeout 600 "$bin/pushbench" --ws 127.0.0.1:7421 --text 127.0.0.1:7412 \
        --socket "$dir/b.sock" --pid "$pid_a" --also-pid "$pid_b" --uid-prefix "c$to-" \
        push -n "$clients" -m "$cluster_messages" -k 4 -p 64 "${flag[@]}" | grep -E "$show"
done
