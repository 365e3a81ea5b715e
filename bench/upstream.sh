#!/usr/bin/env bash
# Pages talking back (--upstream), one sitting: PAGES pages each send MSGS text messages at
# once; the message events are counted by an event-stream reader (GET /v1/events) and, in
# another round, by a webhook receiver; the rate limits are lifted for those two. Then one page
# floods 10,000 messages under the default limits (20 a second after a burst of 20).
#
#   bench/upstream.sh [PAGES] [MSGS]      defaults: 5000 20
set -euo pipefail
cd "$(dirname "$0")/.."
pages=${1:-5000}
msgs=${2:-20}
cargo build --release --quiet --workspace --bins
. bench/single-node.sh
unlimited=(--upstream --upstream-rate 1000000000 --upstream-burst 4000000000)
http_of() { grep -o 'http=[^ ]*' "$dir/pushd.log" | head -1 | cut -d= -f2; }
for round in 1 2; do
    echo "== round $round: $pages pages x $msgs to an event stream"
    start_pushd ./target/release/pushd "${unlimited[@]}" --http-listen 127.0.0.1:0
    timeout 600 ./target/release/pushbench --ws "$ws" --socket "$socket" --pid "$pushd_pid" \
        --uid-prefix "s$round-" upstream -n "$pages" -m "$msgs" --events "$(http_of)" |
        grep -E 'told|dropped|received|rate|CPU'
    echo "== round $round: $pages pages x $msgs to a webhook"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    start_pushd ./target/release/pushd "${unlimited[@]}" --webhook "http://127.0.0.1:$port/hook"
    timeout 600 ./target/release/pushbench --ws "$ws" --socket "$socket" --pid "$pushd_pid" \
        --uid-prefix "w$round-" upstream -n "$pages" -m "$msgs" --webhook-port "$port" |
        grep -E 'told|dropped|received|rate|CPU'
done
echo "== one page floods 10,000 messages under the default limits"
start_pushd ./target/release/pushd --upstream --http-listen 127.0.0.1:0
timeout 600 ./target/release/pushbench --ws "$ws" --socket "$socket" --pid "$pushd_pid" \
    --uid-prefix flood- upstream -n 1 -m 10000 --events "$(http_of)" |
    grep -E 'sent|told|dropped|received|rate|CPU'
stop_pushd
