# Sourced by the bench scripts that run several pushd nodes on fixed ports:
#
#   start NAME WS_PORT TEXT_PORT [PUSHD OPTIONS...]   sets $pid_NAME; socket $dir/NAME.sock
#   start_redis                                        a redis-server on $dir/redis.sock
#                                                      (persistence off), pid $pid_redis; cli runs
#                                                      redis-cli on it
#
# $bin: BIN (a directory with prebuilt pushd, pushctl and pushbench: an A/B run of two
# builds), by default this tree's release build. $dir: a temporary directory for
# sockets and logs, removed with every process in $pids when the script exits.
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    cargo build --release --quiet --workspace
    bin=./target/release
fi
# Every run starts from nothing: no state file read or written (older builds ignore it).
export PUSHD_STATE_FILE=none
dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# Fixed loopback ports below the ephemeral range, which tens of thousands of client
# sockets fill.
start() {
    local name=$1 ws=$2 text=$3
    shift 3
    "$bin/pushd" --ws-listen "127.0.0.1:$ws" --text-listen "127.0.0.1:$text" \
        --socket "$dir/$name.sock" "$@" >/dev/null 2>"$dir/$name.log" &
    pids+=($!)
    eval "pid_$name=$!"
    for _ in $(seq 50); do grep -q " listening " "$dir/$name.log" && return 0; sleep 0.1; done
    echo "$name did not start" >&2; cat "$dir/$name.log" >&2; exit 1
}

start_redis() {
    redis-server --port 0 --unixsocket "$dir/redis.sock" --save "" --appendonly no --dir "$dir" \
        >"$dir/redis.log" 2>&1 &
    pids+=($!)
    pid_redis=$!
    for _ in $(seq 50); do redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 1
}
cli() { redis-cli -s "$dir/redis.sock" "$@"; }
