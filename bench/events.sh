#!/usr/bin/env bash
# Events served to 10 consumers, one sitting: PAGES pages send MSGS text messages each, paced
# to RATE messages a second in all (--upstream, limits lifted), and READERS event streams
# (GET /v1/events) must each get every `message` event. One node, then two nodes through
# Redis with the pages on node b and the readers on node a, so that every event crosses Redis
# (XADD, then every node's XREAD); with Redis's CPU per event. Each rate is one run; the
# highest rate whose slowest consumer got every event is what a node serves.
#
#   bench/events.sh [PAGES] [MSGS] [READERS] [RATES...]   defaults: 2000 25 10 25000 50000 75000
set -euo pipefail
cd "$(dirname "$0")/.."
pages=${1:-2000}
msgs=${2:-25}
readers=${3:-10}
shift 3 2>/dev/null || shift $#
rates=("${@:-25000 50000 75000}")
read -r -a rates <<<"${rates[*]}"
. bench/nodes.sh
unlimited=(--upstream --upstream-rate 1000000000 --upstream-burst 4000000000)
http_of() { grep -o 'http=[^ ]*' "$dir/$1.log" | head -1 | cut -d= -f2; }
show='consumers|told|slow consumers|slowest|rate \(|CPU|XADD'
start one 7301 7302 "${unlimited[@]}" --http-listen 127.0.0.1:0
for rate in "${rates[@]}"; do
    echo "== one node: $pages pages x $msgs at $rate/s, $readers event streams"
    timeout 600 "$bin/pushbench" --ws 127.0.0.1:7301 --socket "$dir/one.sock" --pid "$pid_one" \
        --uid-prefix "s$rate-" upstream -n "$pages" -m "$msgs" --rate "$rate" \
        --events "$(http_of one)" --readers "$readers" | grep -E "$show"
done
kill "$pid_one"
start_redis
start a 7311 7312 --cluster "redis+unix://$dir/redis.sock" --node-name a --http-listen 127.0.0.1:0 "${unlimited[@]}"
start b 7321 7322 --cluster "redis+unix://$dir/redis.sock" --node-name b "${unlimited[@]}"
sleep 2
for rate in "${rates[@]}"; do
    echo "== two nodes: $pages pages on b x $msgs at $rate/s, $readers event streams on a"
    timeout 600 "$bin/pushbench" --ws 127.0.0.1:7321 --socket "$dir/b.sock" --pid "$pid_b" \
        --also-pid "$pid_a" --redis-socket "$dir/redis.sock" --uid-prefix "c$rate-" \
        upstream -n "$pages" -m "$msgs" --rate "$rate" --events "$(http_of a)" \
        --readers "$readers" | grep -E "$show"
done
