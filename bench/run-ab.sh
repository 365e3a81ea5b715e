#!/usr/bin/env bash
# Before/after figures for a change, measured in one sitting, alternating A B A B.
#
#   bench/run-ab.sh A_PUSHD B_PUSHD [RESULTS.jsonl]
#
# A_PUSHD and B_PUSHD are two pushd binaries (e.g. a copy of target/release/pushd
# built before the change, and the one built after). The same pushbench
# (target/release/pushbench) drives both. For every round and every scenario a
# fresh pushd is started on free loopback ports with a private admin socket,
# A first then B, so that slow drifts of the shared machine hit both alike.
# Scenarios: idle RSS with 19,000 bound connections, and pushes to 10,000
# clients (MESSAGES, default 200k, through 4 text connections x 64 in flight),
# and with "paced" the same pushes at PACED messages/s (default 50000).
# ROUNDS (default 2) sets the number of A B pairs; SCENARIOS (default "idle push")
# picks the scenarios. Every run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
a_bin=$1 b_bin=$2
results=${3:-target/bench-ab.jsonl}
rounds=${ROUNDS:-2}
scenarios=${SCENARIOS:-idle push}
messages=${MESSAGES:-200000}
paced=${PACED:-50000}
bench=./target/release/pushbench
[ -x "$bench" ] || cargo build --release --quiet -p pushbench
: > "$results"
# shellcheck source=bench/single-node.sh
. bench/single-node.sh

# run SIDE BINARY LABEL PUSHBENCH ARGS...
run() {
    local side=$1 bin=$2 label=$3
    shift 3
    start_pushd "$bin"
    local report
    report=$(timeout 600 "$bench" --ws "$ws" --text "$text" --socket "$socket" \
        --pid "$pushd_pid" --json "$@")
    echo "{\"side\":\"$side\",\"label\":\"$label\",\"report\":$report}" >> "$results"
    echo "$side $label: done" >&2
}

for _ in $(seq "$rounds"); do
    for side in A B; do
        bin=$a_bin; [ "$side" = B ] && bin=$b_bin
        case " $scenarios " in *" idle "*)
            run "$side" "$bin" idle-19000 idle -n 19000 --hold 1s ;;
        esac
        case " $scenarios " in *" push "*)
            run "$side" "$bin" push-10000 push -n 10000 -m "$messages" -k 4 -p 64 ;;
        esac
        case " $scenarios " in *" paced "*)
            run "$side" "$bin" "paced-$paced" push -n 10000 -m "$messages" -k 4 -p 64 --rate "$paced" ;;
        esac
    done
done

python3 - "$results" <<'PY'
import json, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    row = json.loads(line)
    runs[(row["label"], row["side"])].append({f["name"]: f["value"] for f in row["report"]["figures"]})
for label in sorted({label for label, _ in runs}):
    print(label)
    names = list(runs[(label, "A")][0])
    for name in names:
        a = [r[name] for r in runs[(label, "A")] if name in r]
        b = [r[name] for r in runs[(label, "B")] if name in r]
        print(f"  {name:36} A: {', '.join(f'{v:.3f}' for v in a):28} B: {', '.join(f'{v:.3f}' for v in b)}")
PY
