complete -c pushd -l ws-listen -d 'WebSocket listener for clients (port 0 picks a free port)' -r
complete -c pushd -l text-listen -d 'Text port for backends: one JSON line in, `ok` or `fail` out' -r
complete -c pushd -l socket -d 'Admin socket for pushctl [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID.sock]' -r -F
complete -c pushd -l heartbeat -d 'Close a connection that sent nothing for longer than this; 0 disables' -r
complete -c pushd -l ping-interval -d 'Send a WebSocket ping this often; 0 disables' -r
complete -c pushd -l max-message-size -d 'Largest inbound WebSocket message (larger: close 1009) and largest text-port line (larger: `fail`), in bytes' -r
complete -c pushd -s h -l help -d 'Print help'
complete -c pushd -s V -l version -d 'Print version'
