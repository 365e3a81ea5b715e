complete -c pushd -l ws-listen -d 'WebSocket listener for clients (port 0 picks a free port)' -r
complete -c pushd -l text-listen -d 'Text port for backends: one JSON line in, `ok` or `fail` out' -r
complete -c pushd -l max-text-connections -d 'Most text-port connections at once; one more is closed at once and counted' -r
complete -c pushd -l text-idle-timeout -d 'A text-port connection that sends nothing for this long is closed and counted. 0: never' -r
complete -c pushd -l socket -d 'Admin socket for pushctl [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushd -l socket-group -d 'Let the members of GROUP (a name or a numeric gid) use pushctl: the admin socket is given to that group with mode 0660 instead of 0600. pushd must be a member of it' -r
complete -c pushd -l heartbeat -d 'Close a connection that sent nothing for longer than this; 0 disables' -r
complete -c pushd -l ping-interval -d 'Send a WebSocket ping this often; 0 disables' -r
complete -c pushd -l max-message-size -d 'Largest inbound WebSocket message (larger: close 1009) and largest text-port line (larger: `fail`), in bytes' -r
complete -c pushd -l max-queue -d 'Most messages waiting for one connection; one more and the connection is a slow consumer: closed with 4002 and counted' -r
complete -c pushd -l max-queue-bytes -d 'Most payload bytes waiting for one connection (at least --max-message-size); over it, as for --max-queue' -r
complete -c pushd -l max-connections -d 'Most WebSocket connections in all; over it the handshake is answered HTTP 503. 0: only the open-file limit (minus 64 descriptors) applies' -r
complete -c pushd -l max-connections-per-ip -d 'Most WebSocket connections from one IP address; over it the handshake is answered HTTP 429. 0: no limit' -r
complete -c pushd -l max-connections-per-uid -d 'Most connections bound to one uid; what happens to one more is --per-uid-policy. 0: no limit' -r
complete -c pushd -l per-uid-policy -d 'Over --max-connections-per-uid: close the uid\'s oldest connection (code 4004), or refuse the new one (code 1008)' -r -f -a "refuse-new\t'Refuse the new connection ("several tabs, but not more than N")'
close-oldest\t'Close the oldest one ("one session per user": the newest page wins)'"
complete -c pushd -l allow-origin -d 'Only browsers from these origins may connect (exact `scheme://host[:port]`, repeatable or comma-separated); others get HTTP 403. Default: any origin' -r
complete -c pushd -l auth -d 'How clients prove their uid: `none` trusts the first message (the original recipe\'s behaviour); `token` requires a signed token (JWT HS256, uid in `sub`, `exp` required) as the first message or as `?token=` in the URL' -r -f -a "none\t'The first text message is the uid, unverified'
token\t'The client presents a signed token carrying the uid'"
complete -c pushd -l auth-secret-file -d 'File holding the token secret (at least 32 bytes), for HS256 tokens. With `--auth token`, give this or --auth-public-key-file. The secret never goes on the command line' -r -F
complete -c pushd -l auth-public-key-file -d 'PEM public key (RSA, EC P-256/P-384 or Ed25519) verifying tokens signed with RS256, ES256 or EdDSA by its private half, which stays with the backend; instead of --auth-secret-file' -r -F
complete -c pushd -l tls-cert -d 'PEM certificate chain for the WebSocket listener, which then speaks TLS (`wss://`) only. Reloaded on SIGHUP and `pushctl reload`' -r -F
complete -c pushd -l tls-key -d 'PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1)' -r -F
complete -c pushd -l trusted-proxy -d 'A proxy in this range (CIDR, or one address; repeatable or comma-separated) is believed about the client\'s address: `Forwarded`, else the rightmost untrusted `X-Forwarded-For` address, else `X-Real-IP`, and with --proxy-protocol its PROXY header. Other peers\' headers are ignored' -r
complete -c pushd -l handshake-timeout -d 'Longest a WebSocket handshake may take before the socket is dropped' -r
complete -c pushd -l drain -d 'On SIGTERM, drain over DUR before stopping: refuse new WebSocket clients and close each connection with 1012 at a random moment within DUR, so that clients come back spread out. 0 closes every connection at once with 1001. Also `pushctl drain`\'s default window (30s when this is 0). At most 1 day' -r
complete -c pushd -l max-groups-per-uid -d 'Most groups one uid may belong to; an add past it is refused (counted)' -r
complete -c pushd -l max-memberships -d 'Most group memberships in all groups together; an add past it is refused (counted)' -r
complete -c pushd -l state-file -d 'Single node: where what pushd holds in memory (waiting messages, copies kept for resumes, bans, the message-id position) is written at a stop and read back at the next start; `none` turns it off. Not used in cluster mode (Redis holds all of it) [default: $STATE_DIRECTORY/pushd.state under systemd, else $XDG_STATE_HOME/pushd/pushd.state, else ~/.local/state/pushd/pushd.state]' -r -F
complete -c pushd -l metrics-listen -d 'Serve Prometheus metrics at http://ADDR/metrics, and the probes /v1/health and /v1/ready, to whoever reaches ADDR (no token); off by default. `--http-listen` serves /metrics too, behind its access rule (the probes without it)' -r
complete -c pushd -l http-listen -d 'Serve the HTTP API for backends (/v1/send, /v1/push, /v1/kick, ... and /metrics) on ADDR; off by default. See docs/http-api.md' -r
complete -c pushd -l http-token-file -d 'Every API request must carry `Authorization: Bearer <this file\'s token>` (at least 16 bytes; reloaded with the other keys). Without it the API serves loopback clients only' -r -F
complete -c pushd -l max-http-connections -d 'Most connections to each HTTP listener (the API, the metrics) at once; one more is closed at once and counted' -r
complete -c pushd -l http-idle-timeout -d 'An HTTP connection with no byte either way for this long is closed and counted (an event stream sends a comment every 15 s). 0: never' -r
complete -c pushd -l offline-grace -d 'A uid whose last connection closed is announced `offline` only if it has not bound again within this (so a page navigation is not offline/online)' -r
complete -c pushd -l upstream-rate -d 'With --upstream: messages per second one connection may send (a bucket refilled at this rate); more are dropped, counted' -r
complete -c pushd -l upstream-burst -d 'With --upstream: the bucket\'s size, the most messages a connection may send at once after a quiet while [default: the rate, rounded up]' -r
complete -c pushd -l events-retain -d 'Events kept for consumers that come back (`Last-Event-ID`, `?since=`, `pushctl events --since`); in cluster mode, the length of the cluster\'s event stream in Redis. 0 keeps none (and a single node then makes no event while nobody listens)' -r
complete -c pushd -l webhook -d 'POST events to URL (http:// or https://) in batches, retried with backoff while the receiver fails' -r
complete -c pushd -l webhook-secret-file -d 'Sign each webhook body: `X-Pushd-Signature: sha256=<hex HMAC-SHA256 of the body>` with the secret in this file (at least 32 bytes)' -r -F
complete -c pushd -l log-format -d 'Log lines as text for people, or as one JSON object per line for log shippers. The level comes from RUST_LOG (default `info`; `debug` adds a line per connection bound and closed)' -r -f -a "human\t'Text for people (colour only on a terminal)'
json\t'One JSON object per line'"
complete -c pushd -l bind-timeout -d 'Close a connection that has not sent its uid this long after the handshake (code 1008); 0 disables' -r
complete -c pushd -l mailbox-ttl -d 'How long a push waits in the mailbox of a uid that has no connection, for its next connection (a page reload or navigation); 0 turns the mailbox off: such a push answers `fail`, as in the original recipe' -r
complete -c pushd -l mailbox-size -d 'Most messages waiting for one uid; one more pushes the oldest out (counted)' -r
complete -c pushd -l mailbox-memory -d 'Bytes kept by all mailboxes together (each message: its payload plus 160 bytes; each uid\'s store: 256); past it a push that would be kept answers `fail` (counted)' -r
complete -c pushd -l cluster -d 'Cluster mode: share presence and routing with other nodes through the Redis at URL (`redis://HOST:PORT`, `redis+unix:///PATH`, or `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER` to find and follow the master through Redis Sentinel). Off by default: a single node' -r
complete -c pushd -l cluster-prefix -d 'Key and channel prefix in Redis, so several clusters can share one Redis' -r
complete -c pushd -l node-name -d 'This node\'s name in `list` and `stats` [default: the host name]' -r
complete -c pushd -l cluster-lease -d 'A node whose lease (renewed every third of it, on Redis\'s clock) runs out is taken for dead and its uids leave presence' -r
complete -c pushd -l cluster-timeout -d 'Longest wait for Redis and for the other nodes\' replies (list, stats, kick, confirmed sends) before answering with what arrived (pushctl exit status 3)' -r
complete -c pushd -l text-confirm -d 'When the text port answers `ok` for a uid held by another node: once that node `received` the message from Redis, or once it `delivered` it to a connection (a round trip more). pushctl send always waits for delivery' -r -f -a "received\t'The node holding the uid received the message from Redis'
delivered\t'The node holding the uid queued it to at least one connection'"
complete -c pushd -l proxy-protocol -d 'Every WebSocket connection starts with a PROXY protocol header (v1 or v2, as HAProxy, nginx and load balancers send it) from a --trusted-proxy; a connection without one, or from another peer, is dropped and counted'
complete -c pushd -l upstream -d 'Messages from pages: a bound client\'s text messages become `message` events (uid, connection, seq, data), on every event consumer'
complete -c pushd -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pushd -s V -l version -d 'Print version'
