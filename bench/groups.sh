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

# Membership changes: 1,000,000 offline uids over 100 groups, a thousand per request, through
# the admin socket and through the HTTP API's bulk endpoint; then pushctl, one process per
# 1,000 uids (what a cron job does), 100 times.
for via in admin http; do
    start_pushd ./target/release/pushd --http-listen 127.0.0.1:0
    http=$(grep -o 'http=[^ ]*' "$dir/pushd.log" | head -1 | cut -d= -f2)
    extra=()
    [ "$via" = http ] && extra=(--http "$http")
    echo "== memberships through $via"
    timeout 600 ./target/release/pushbench --socket "$socket" --pid "$pushd_pid" \
        memberships -m 1000000 -g 100 "${extra[@]}" | grep -E 'second|CPU|RSS'
done
echo "== memberships through pushctl (100 processes of 1,000 uids)"
start_pushd ./target/release/pushd
uids=$(seq -f 'p%g' 1 1000 | tr '\n' ' ')
cpu() { awk '{print $14 + $15}' "/proc/$pushd_pid/stat"; }
before=$(cpu)
started=$(date +%s.%N)
for g in $(seq 100); do
    # shellcheck disable=SC2086 # a thousand uids, one word each
    ./target/release/pushctl --socket "$socket" group add "g$g" $uids >/dev/null
done
ended=$(date +%s.%N)
ticks=$(( $(cpu) - before ))
python3 -c "import os,sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'  adds per second (pushctl)        {100000/t:12.0f} /s'); print(f'  server CPU per add               {int(sys.argv[3])/os.sysconf(\"SC_CLK_TCK\")*1e6/100000:12.2f} µs')" "$started" "$ended" "$ticks"
stop_pushd
