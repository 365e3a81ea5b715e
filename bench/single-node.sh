# Sourced by the single-node bench scripts: start and stop one pushd on free
# loopback ports with a private admin socket, and read the addresses it bound.
#
#   start_pushd BINARY [PUSHD OPTIONS...]   sets $pushd_pid, $ws, $text
#   stop_pushd
#
# It makes a temporary directory for the socket and the log, and removes it, with
# any pushd still running, when the script exits.
# Every run starts from nothing: no state file read or written (older builds ignore it).
export PUSHD_STATE_FILE=none
pushd_pid=""
dir=$(mktemp -d)
socket="$dir/pushd.sock"
trap 'stop_pushd; rm -rf "$dir"' EXIT

start_pushd() {
    local bin=$1
    shift
    stop_pushd
    "$bin" --ws-listen 127.0.0.1:0 --text-listen 127.0.0.1:0 --socket "$socket" "$@" \
        >/dev/null 2>"$dir/pushd.log" &
    pushd_pid=$!
    for _ in $(seq 1 50); do
        if grep -q " listening " "$dir/pushd.log"; then
            ws=$(grep -o 'ws=[^ ]*' "$dir/pushd.log" | head -1 | cut -d= -f2)
            text=$(grep -o 'text=[^ ]*' "$dir/pushd.log" | head -1 | cut -d= -f2)
            return 0
        fi
        sleep 0.1
    done
    echo "pushd did not start" >&2; cat "$dir/pushd.log" >&2; exit 1
}

stop_pushd() {
    if [ -n "$pushd_pid" ]; then
        kill "$pushd_pid" 2>/dev/null || true
        wait "$pushd_pid" 2>/dev/null || true
        pushd_pid=""
    fi
}
