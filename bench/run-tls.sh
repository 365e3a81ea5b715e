#!/usr/bin/env bash
# Memory of idle wss:// connections against ws:// ones, in one sitting, alternating.
#
#   bench/run-tls.sh [RESULTS.jsonl]
#
# Makes a self-signed certificate for localhost (openssl), then for every round
# starts a fresh pushd (target/release/pushd) without TLS and one with
# --tls-cert/--tls-key, and holds IDLE (default 19000) bound connections to each
# (pushbench idle; --tls-ca for the TLS one). ROUNDS (default 2) pairs. Every run
# is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-target/bench-tls.jsonl}
rounds=${ROUNDS:-2}
idle=${IDLE:-19000}
bin=./target/release/pushd
bench=./target/release/pushbench
[ -x "$bench" ] && [ -x "$bin" ] || cargo build --release --quiet --workspace
: > "$results"
# shellcheck source=bench/single-node.sh
. bench/single-node.sh
# A CA of the run's own, and a certificate for localhost it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=pushbench-ca -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/key.pem" -out "$dir/cert.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\n' > "$dir/ext"
openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 1 -extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null

for _ in $(seq "$rounds"); do
    for via in ws wss; do
        tls=() client=()
        if [ "$via" = wss ]; then
            tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
            client=(--tls-ca "$dir/ca.pem")
        fi
        start_pushd "$bin" "${tls[@]}"
        report=$(timeout 300 "$bench" --ws "$ws" --text "$text" --socket "$socket" \
            --pid "$pushd_pid" --json "${client[@]}" idle -n "$idle" --hold 1s)
        echo "{\"via\":\"$via\",\"report\":$report}" >> "$results"
        echo "$via: $(echo "$report" | python3 -c 'import json,sys; print({f["name"]: round(f["value"], 1) for f in json.load(sys.stdin)["figures"]})')" >&2
    done
done
