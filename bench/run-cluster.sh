#!/usr/bin/env bash
# The cluster scale run behind docs/PERFORMANCE.md ("Cluster mode"):
#
#   bench/run-cluster.sh [RESULTS.jsonl]         (IDLE=18000, BIN=./target/release)
#
# One redis-server (Unix socket, persistence off), three pushd nodes a, b, c in
# cluster mode and, for comparison in the same run, one single pushd without
# --cluster ("solo"). Then:
#   1. IDLE connections held open on every node (one pushbench process per node,
#      IDLE each, default 18000: each node, with 20,000 files, takes 19,168 connections, and b gets 1,000 more);
#      RSS per connection per node;
#   2. with all of them online (after SETTLE seconds, default 5, so that the binds'
#      last takes and presence writes are done before RSS is read): push rate and
#      latency with 800 more clients on b,
#      pushed through a's text port (cross-node), through b's own (same node, still
#      cluster mode), and against solo; Redis's CPU time per push over the pushes (from
#      /proc: pushbench --pid, "server CPU per message" in the push-*-node records) and
#      its commands (INFO commandstats);
#   3. `pushctl kick` through a of a uid held by b, 20 times (whole process);
#   4. SIGKILL of c: time until c's uids are offline as seen from a.
# Every step is bounded by `timeout`. Takes about 5 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-cluster.jsonl}
# Appends, so that several runs can share one file (the doc reports medians of 3).
idle=${IDLE:-18000}
# shellcheck source=bench/nodes.sh
. bench/nodes.sh

start_redis

cluster=(--cluster "redis+unix://$dir/redis.sock")
start a 21234 25678 "${cluster[@]}" --node-name a
start b 22234 26678 "${cluster[@]}" --node-name b
start c 23234 27678 "${cluster[@]}" --node-name c
start solo 24234 28678
sleep 2
$bin/pushctl --socket "$dir/a.sock" stats | grep -q "^nodes: *3" || { echo "cluster not formed" >&2; exit 1; }

record() { echo "{\"label\":\"$1\",\"report\":$2}" >> "$results"; echo "$1: $2" >&2; }
bench() { timeout 300 $bin/pushbench --json "$@"; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
declare -A rss_before
for node in a b c; do pid_var=pid_$node; rss_before[$node]=$(rss_kib "${!pid_var}"); done

# 1. IDLE held connections per node, uids a0.., b0.., c0.. (hold outlasts the run).
declare -A ws_port=([a]=21234 [b]=22234 [c]=23234)
for node in a b c; do
    pid_var=pid_$node
    # Not through `timeout`: killing the wrapper would leave pushbench running.
    $bin/pushbench --json --timeout 120s --ws "127.0.0.1:${ws_port[$node]}" --socket "$dir/$node.sock" \
        --pid "${!pid_var}" --uid-prefix "$node" idle -n "$idle" --hold 600s >"$dir/idle-$node.json" &
    pids+=($!)
done
expected=$(( 3 * idle ))
for _ in $(seq 600); do
    online=$($bin/pushctl --socket "$dir/a.sock" --json stats | jq .connections)
    [ "$online" -ge "$expected" ] && break
    sleep 0.5
done
echo "online in the cluster: $online" >&2
# Idle means idle: the binds' last mailbox takes and presence writes finish first.
sleep "${SETTLE:-5}"
for node in a b c; do
    pid_var=pid_$node
    after=$(rss_kib "${!pid_var}")
    per_conn=$(( (after - ${rss_before[$node]}) * 1024 / idle ))
    record "rss-$node" "{\"connections\":$idle,\"rss_kib_before\":${rss_before[$node]},\"rss_kib_after\":$after,\"bytes_per_connection\":$per_conn}"
done

# 2. Pushes with everybody online: cross-node, same node, solo.
cli config resetstat >/dev/null
record push-cross-node "$(bench --ws 127.0.0.1:22234 --text 127.0.0.1:25678 --socket "$dir/a.sock" \
    --pid "$pid_redis" --uid-prefix x push -n 800 -m 100000)"
record redis-commandstats "$(cli info commandstats | tr -d '\r' |
    grep -E 'evalsha|publish|exec|exists|zintercard|subscribe' |
    jq -c -R -s 'split("\n") | map(select(length > 0))')"
record push-same-node "$(bench --ws 127.0.0.1:22234 --text 127.0.0.1:26678 --socket "$dir/b.sock" \
    --pid "$pid_redis" --uid-prefix y push -n 800 -m 100000)"
# The same two at a paced 40,000 pushes a second, below what either path saturates at
# here: Redis's CPU per push at equal load, with no backlog building anywhere.
record push-cross-node-paced "$(bench --ws 127.0.0.1:22234 --text 127.0.0.1:25678 --socket "$dir/a.sock" \
    --pid "$pid_redis" --uid-prefix v push -n 800 -m 100000 --rate 40000)"
record push-same-node-paced "$(bench --ws 127.0.0.1:22234 --text 127.0.0.1:26678 --socket "$dir/b.sock" \
    --pid "$pid_redis" --uid-prefix w push -n 800 -m 100000 --rate 40000)"
record push-solo "$(bench --ws 127.0.0.1:24234 --text 127.0.0.1:28678 --socket "$dir/solo.sock" \
    --uid-prefix z push -n 800 -m 100000)"

# 3. Kick latency through a, of uids held by b, as whole pushctl processes.
kicks=()
for i in $(seq 1 20); do
    start_ns=$(date +%s%N)
    $bin/pushctl --socket "$dir/a.sock" kick "b$i" >/dev/null
    kicks+=($(( ($(date +%s%N) - start_ns) / 1000 )))
done
record kick-us "$(printf '%s\n' "${kicks[@]}" | jq -c -s 'sort | {runs: ., median: .[length/2|floor]}')"

# 4. SIGKILL c; time until its uids are offline from a.
probe=c$(( idle - 1 ))
$bin/pushctl --socket "$dir/a.sock" online "$probe" >/dev/null || { echo "$probe not online" >&2; exit 1; }
start_ns=$(date +%s%N)
kill -9 "$pid_c"
while $bin/pushctl --socket "$dir/a.sock" online "$probe" >/dev/null; do sleep 0.02; done
record sigkill-to-offline-ms "$(( ($(date +%s%N) - start_ns) / 1000000 ))"
record nodes-after-kill "$($bin/pushctl --socket "$dir/a.sock" --json stats | jq '.cluster.nodes | length')"
echo "results in $results" >&2
