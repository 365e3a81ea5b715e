#!/usr/bin/env bash
# pushd against the peers and the floor, in one sitting, alternating.
#
#   bench/run-peers.sh [RESULTS.jsonl]
#
# Servers, in this order every round: Node 20 + ws and Bun (uWebSockets) from
# ../shared/peers (copied into a temporary directory and installed there with
# `npm ci`; nothing of theirs is kept), pushd (target/release/pushd) and the
# floor (target/release/pushfloor). Each gets a fresh process for each
# scenario: idle RSS with IDLE (default 19000) bound connections, MESSAGES
# (default 200k) pushes to 10,000 clients through 4 text connections x 64 in
# flight, and the same pushes paced at PACED messages/s (default 50000). SCENARIOS
# (default "idle push paced") picks the scenarios. pushbench learns that the peers' clients are bound with
# --bind-probe, as they have no admin socket. ROUNDS (default 1); SERVERS
# (default "node bun pushd floor"). Every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-peers.jsonl}
rounds=${ROUNDS:-1}
servers=${SERVERS:-node bun pushd floor}
idle=${IDLE:-19000}
messages=${MESSAGES:-200000}
paced=${PACED:-50000}
scenarios=${SCENARIOS:-idle push paced}
peers=${PEERS:-../shared/peers}
bench=./target/release/pushbench
[ -x "$bench" ] && [ -x target/release/pushd ] && [ -x target/release/pushfloor ] ||
    cargo build --release --quiet --workspace
: > "$results"
# shellcheck source=bench/single-node.sh
. bench/single-node.sh
cp -r "$peers/node-ws" "$peers/bun" "$dir/"
for peer in node-ws bun; do
    (cd "$dir/$peer" && npm ci --silent --no-audit --no-fund >/dev/null)
done
ulimit -n "$(ulimit -Hn)"

# A peer on its ports: node-ws's are fixed (1234, 5678), Bun's are set.
start_peer() {
    stop_pushd
    ws=127.0.0.1:1234 text=127.0.0.1:5678
    case $1 in
        node) (cd "$dir/node-ws" && exec node server.js) >"$dir/peer.log" 2>&1 & ;;
        bun) (cd "$dir/bun" && WS_PORT=1234 TEXT_PORT=5678 exec node_modules/.bin/bun server.js) \
            >"$dir/peer.log" 2>&1 & ;;
    esac
    pushd_pid=$!
    for _ in $(seq 1 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/5678) 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$1 did not start" >&2; cat "$dir/peer.log" >&2; exit 1
}

# run SERVER LABEL PUSHBENCH ARGS...
run() {
    local server=$1 label=$2 probe=()
    shift 2
    case $server in
        pushd) start_pushd target/release/pushd ;;
        floor) start_pushd target/release/pushfloor ;;
        *) start_peer "$server"; probe=(--bind-probe) ;;
    esac
    local report
    report=$(timeout 600 "$bench" --ws "$ws" --text "$text" --socket "$socket" \
        --pid "$pushd_pid" --json "${probe[@]}" "$@")
    echo "{\"side\":\"$server\",\"label\":\"$label\",\"report\":$report}" >> "$results"
    echo "$server $label: done" >&2
}

for _ in $(seq "$rounds"); do
    for server in $servers; do
        case " $scenarios " in *" idle "*)
            run "$server" "idle-$idle" idle -n "$idle" --hold 1s ;;
        esac
        case " $scenarios " in *" push "*)
            run "$server" push-10000 push -n 10000 -m "$messages" -k 4 -p 64 ;;
        esac
        case " $scenarios " in *" paced "*)
            run "$server" "paced-$paced" push -n 10000 -m "$messages" -k 4 -p 64 --rate "$paced" ;;
        esac
    done
done
stop_pushd

python3 - "$results" <<'PY'
import json, sys
from collections import defaultdict
runs = defaultdict(list)
sides = []
for line in open(sys.argv[1]):
    row = json.loads(line)
    if row["side"] not in sides:
        sides.append(row["side"])
    runs[(row["label"], row["side"])].append({f["name"]: f["value"] for f in row["report"]["figures"]})
for label in sorted({label for label, _ in runs}):
    print(label)
    names = list(next(r for (l, _), rs in runs.items() if l == label for r in rs))
    for name in names:
        cells = [f"{side}: " + ", ".join(f"{r[name]:.3f}" for r in runs[(label, side)] if name in r) for side in sides]
        print(f"  {name:36} " + "   ".join(f"{c:24}" for c in cells))
PY
