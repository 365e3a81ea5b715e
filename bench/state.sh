#!/usr/bin/env bash
# A single node's restart with its state file holding M waiting messages: how long pushd
# takes to write it at the stop and to read it at the start, the file's size, and the
# mailboxes before and after (messages and payload bytes; nothing may be missing).
#
#   bench/state.sh [MESSAGES] [UIDS] [PADDING]     defaults: 100000 10000 80
#
# The messages are pushed by `pushbench mailbox` (JSON of about 20 bytes plus PADDING)
# to uids that never connect, so all of them wait when pushd stops.
set -euo pipefail
cd "$(dirname "$0")/.."
messages=${1:-100000}
uids=${2:-10000}
padding=${3:-80}
cargo build --release --quiet --workspace --bins
bin=./target/release
. bench/single-node.sh
state="$dir/pushd.state"
options=(--state-file "$state" --mailbox-ttl 10m --mailbox-memory 1073741824)

waiting() {
    "$bin/pushctl" --socket "$socket" --json mailbox | python3 -c '
import json, sys
boxes = json.load(sys.stdin)
print(sum(b["messages"] for b in boxes), sum(b["bytes"] for b in boxes))'
}

start_pushd "$bin/pushd" "${options[@]}"
"$bin/pushbench" mailbox --ws "$ws" --text "$text" --socket "$socket" \
    -u "$uids" -m "$messages" --padding "$padding" --pid "$pushd_pid" >/dev/null
read -r before_messages before_bytes < <(waiting)
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$pushd_pid/status")
stop_pushd
written=$(grep -o 'state file written.*' "$dir/pushd.log" || { cat "$dir/pushd.log" >&2; exit 1; })
size=$(stat -c %s "$state")

started=$(date +%s%N)
start_pushd "$bin/pushd" "${options[@]}"
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
read_line=$(grep -o 'state file read.*' "$dir/pushd.log")
restored=$(grep -o 'state restored.*' "$dir/pushd.log")
read -r after_messages after_bytes < <(waiting)
rss_after=$(awk '/VmRSS/ {print $2}' "/proc/$pushd_pid/status")

echo "messages waiting: before $before_messages ($before_bytes payload bytes), after $after_messages ($after_bytes)"
echo "write at the stop: $written"
echo "file: $size bytes ($(( size / (before_messages > 0 ? before_messages : 1) )) per message)"
echo "read at the start: $read_line"
echo "restore: $restored"
echo "start to listening (includes the read): ${ready_ms} ms"
echo "pushd RSS: before the stop ${rss_before} KiB, after the start ${rss_after} KiB"
[ "$before_messages" = "$after_messages" ] && [ "$before_bytes" = "$after_bytes" ] ||
    { echo "LOST: the mailboxes differ" >&2; exit 1; }
