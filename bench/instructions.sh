#!/usr/bin/env bash
# pushd's own (user-space) instructions per push, counted by valgrind's callgrind:
# the same count for the same binary and load whatever else the machine is doing, so a
# change on the push path can be judged on a shared machine whose timings drift.
#
#   bench/instructions.sh PUSHD [PUSHD ...]
#
# For each binary, two runs under callgrind: 1,000 clients get 10,000 and then 30,000
# pushes (4 text connections, paced at 5,000 msg/s, which callgrind keeps up with);
# instructions per push = the difference of the totals / 20,000, so connecting and
# starting cancel out. The kernel's part (the socket writes, most of the real cost)
# is not counted: for that, see the pushbench figures.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 2; }
bench=./target/release/pushbench
[ -x "$bench" ] || cargo build --release --quiet -p pushbench
# Every run starts from nothing: no state file read or written (older builds ignore it).
export PUSHD_STATE_FILE=none
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# total BINARY MESSAGES: pushd's instruction count for the whole run
total() {
    local bin=$1 messages=$2 log="$dir/pushd.log"
    : > "$log"
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" \
        --ws-listen 127.0.0.1:0 --text-listen 127.0.0.1:0 --socket "$dir/pushd.sock" \
        >/dev/null 2>"$log" &
    local pid=$!
    for _ in $(seq 1 300); do grep -q ' listening ' "$log" && break; sleep 0.1; done
    local ws text
    ws=$(grep -o 'ws=[^ ]*' "$log" | head -1 | cut -d= -f2)
    text=$(grep -o 'text=[^ ]*' "$log" | head -1 | cut -d= -f2)
    timeout 300 "$bench" --ws "$ws" --text "$text" --socket "$dir/pushd.sock" \
        push -n 1000 -m "$messages" -k 4 -p 64 --rate 5000 > "$dir/bench.out"
    grep -q 'lost (ok but never received) *0 *$' "$dir/bench.out" ||
        { echo "lost pushes under callgrind:" >&2; cat "$dir/bench.out" >&2; exit 1; }
    kill -TERM "$pid"
    wait "$pid" || true
    callgrind_annotate "$dir/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }'
}

for bin in "$@"; do
    small=$(total "$bin" 10000)
    large=$(total "$bin" 30000)
    echo "$bin: $(( (large - small) / 20000 )) instructions per push (totals $small, $large)"
done
