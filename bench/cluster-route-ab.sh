#!/usr/bin/env bash
# Before/after figures for a change to the cluster's route path, in one sitting,
# alternating A B A B:
#
#   bench/cluster-route-ab.sh A_PUSHD B_PUSHD [RESULTS.jsonl]
#
# For each side and round: a fresh redis-server (Unix socket, persistence off) and
# two nodes a and b of that pushd; CLIENTS (default 800) clients on b are pushed MESSAGES (default
# 100k) through a's text port (cross-node, 4 connections x 64 in flight; with
# SAME_NODE=1 through b's own: same node, still cluster mode). Recorded:
# the push rate and latency (pushbench) and redis-server's whole CPU time (user +
# system, from /proc) over the run, per push. ROUNDS (default 2) A B pairs. The
# same pushbench (target/release/pushbench) drives both. Every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
a_bin=$1 b_bin=$2
results=${3:-target/bench-cluster-route-ab.jsonl}
rounds=${ROUNDS:-2}
messages=${MESSAGES:-100000}
bench=./target/release/pushbench
[ -x "$bench" ] || cargo build --release --quiet -p pushbench
: > "$results"
ticks=$(getconf CLK_TCK)

# cpu_ticks PID: user + system ticks of a process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {
    local side=$1 pushd=$2 dir pids=()
    dir=$(mktemp -d)
    redis-server --port 0 --unixsocket "$dir/redis.sock" --save "" --appendonly no \
        --dir "$dir" >/dev/null 2>&1 &
    local redis=$!
    pids+=("$redis")
    for _ in $(seq 50); do redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
    local url="redis+unix://$dir/redis.sock"
    "$pushd" --ws-listen 127.0.0.1:31234 --text-listen 127.0.0.1:35678 --socket "$dir/a.sock" \
        --cluster "$url" --node-name a 2>"$dir/a.log" >/dev/null &
    pids+=($!)
    "$pushd" --ws-listen 127.0.0.1:32234 --text-listen 127.0.0.1:36678 --socket "$dir/b.sock" \
        --cluster "$url" --node-name b 2>"$dir/b.log" >/dev/null &
    pids+=($!)
    sleep 2
    local before after report
    before=$(cpu_ticks "$redis")
    local text=127.0.0.1:35678
    [ -n "${SAME_NODE:-}" ] && text=127.0.0.1:36678
    report=$(timeout 300 "$bench" --json --ws 127.0.0.1:32234 --text "$text" \
        --socket "$dir/a.sock" --pid "$redis" push -n "${CLIENTS:-800}" -m "$messages")
    after=$(cpu_ticks "$redis")
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
    local us_per_push
    us_per_push=$(echo "scale=2; ($after - $before) * 1000000 / $ticks / $messages" | bc)
    echo "{\"side\":\"$side\",\"redis_cpu_us_per_push\":$us_per_push,\"report\":$report}" >> "$results"
    echo "$side: redis ${us_per_push} us/push; $(echo "$report" | jq -c '[.figures[] | select(.name | test("rate|p99|CPU"))] | map({(.name): .value}) | add')" >&2
}

for _ in $(seq "$rounds"); do
    run A "$a_bin"
    run B "$b_bin"
done
