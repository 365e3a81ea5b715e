# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_pushctl_global_optspecs
    string join \n socket= json h/help V/version
end

function __fish_pushctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_pushctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_pushctl_using_subcommand
    set -l cmd (__fish_pushctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c pushctl -n "__fish_pushctl_needs_command" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_needs_command" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_needs_command" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_needs_command" -s V -l version -d 'Print version'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "list" -d 'Show online uids: connections, idle time, time online, address'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "kick" -d 'Close every connection of the given uids (close code 4000)'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "send" -d 'Push MESSAGE as one text frame to every connection of UID; while UID has none, it waits in UID\'s mailbox for its next connection (pushd --mailbox-ttl)'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "group" -d 'Groups of uids: membership belongs to the uid and outlives its connections; a push to a group reaches every connection of every member'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "groups" -d 'The groups UID belongs to (exit 1 when none)'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "broadcast" -d 'Push MESSAGE as one text frame to every bound connection'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "online" -d 'Is UID online? Exit status 0 if so, 1 if not'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "stats" -d 'Version, uptime, bound addresses, connections, uids and counters'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "watch" -d 'A live view, refreshed every --interval: connections, uids, message rates and the most recently active uids (like `top`). On a terminal it redraws the screen; on a pipe it prints one snapshot after another'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "unban" -d 'Lift the ban on each UID. Exit status 0 if one was banned, 1 if none'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "mailbox" -d 'Show the uids with messages waiting for their next connection (UID, MESSAGES, BYTES, OLDEST), or with --clear empty the mailboxes of UIDs'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "bans" -d 'Show active bans and the time left on each'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "events" -d 'Print presence events as they happen (connect, disconnect, online, offline; message with --upstream), one line each, until interrupted; `--json`: one JSON object per line. In cluster mode, every node\'s'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "reload" -d 'Make pushd read its TLS certificate and key and its token secret or public key again, without closing a connection. Exit status 2, with the reason, when a file did not load: pushd keeps its previous key'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "drain" -d 'Drain this node before a deploy: it stops taking WebSocket clients (503), /v1/ready answers 503, and every connection is closed with 1012 at a random moment within the window, after what it was sent is written, so clients come back spread out. Returns when the last one is closed. The text port, HTTP API and admin socket keep serving'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "upgrade" -d 'Upgrade pushd in place, no client disconnected: pushd starts the new binary with its own arguments and environment and hands it the listeners and every plain WebSocket connection with its state (TLS ones are closed with 1012); the old process then exits. Exit 0 once the new process serves, 1 if it did not take over (the old one serves on)'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "token" -d 'Mint a token for UID (for `pushd --auth token`), signed with the secret in --secret-file. Needs no running daemon'
complete -c pushctl -n "__fish_pushctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pushctl -n "__fish_pushctl_using_subcommand list" -l sort -d 'Order of the rows: by uid, most idle first, or most connections first' -r -f -a "uid\t'By uid'
idle\t'Most idle first (by the uid\'s least idle connection)'
conns\t'Most connections first'"
complete -c pushctl -n "__fish_pushctl_using_subcommand list" -l limit -d 'Show at most N uids (after sorting)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand list" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand list" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l group -d 'Kick every member of GROUP' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l connection -d 'Kick exactly one connection: ID is its `connection` in `list --json` or in events (that tab, not every tab of its uid), on any node' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l idle-over -d 'Kick every connection (bound or not) idle for longer than DUR (e.g. 10m)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l ban -d 'Also ban the uids for DUR (e.g. 1h): they cannot bind again until it ends (close code 4003), even if they were not online' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l reason -d 'Reason text sent in the close frame (at most 123 bytes)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand kick" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -l group -d 'Push to every member of GROUP instead of one uid: `pushctl send --group GROUP MESSAGE` (exit 0 when delivered or queued for any member)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -l connection -d 'Push to exactly one connection (its `connection` id in `list --json` or events), on any node: `pushctl send --connection ID MESSAGE` (exit 0 when it took it; nothing is kept for later)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -l transient -d 'Deliver now or not at all: never keep it in the mailbox of an offline uid'
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand send" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "add" -d 'Make the UIDs members of GROUP (a member\'s TTL is refreshed). Exit 1 when a uid was refused (--max-groups-per-uid, --max-memberships)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "remove" -d 'End the UIDs\' memberships of GROUP (exit 1 when none was a member)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "drop" -d 'Remove GROUP with all its members (exit 1 when it had none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "members" -d 'GROUP\'s members: UID, CONNS, EXPIRES (exit 1 when it has none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "list" -d 'Every group: GROUP, MEMBERS, ONLINE'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and not __fish_seen_subcommand_from add remove drop members list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from add" -l ttl -d 'The memberships end after DUR (e.g. 1h)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from add" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from add" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from remove" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from remove" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from drop" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from drop" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from drop" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from members" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from members" -l online -d 'Only the members with a connection'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from members" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from members" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from list" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from list" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "add" -d 'Make the UIDs members of GROUP (a member\'s TTL is refreshed). Exit 1 when a uid was refused (--max-groups-per-uid, --max-memberships)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "remove" -d 'End the UIDs\' memberships of GROUP (exit 1 when none was a member)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "drop" -d 'Remove GROUP with all its members (exit 1 when it had none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "members" -d 'GROUP\'s members: UID, CONNS, EXPIRES (exit 1 when it has none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every group: GROUP, MEMBERS, ONLINE'
complete -c pushctl -n "__fish_pushctl_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pushctl -n "__fish_pushctl_using_subcommand groups" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand groups" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand groups" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand broadcast" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand broadcast" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand broadcast" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand online" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand online" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand online" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand stats" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand stats" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand stats" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -l interval -d 'Time between refreshes' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -l iterations -d 'Stop after N refreshes (default: until interrupted)' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -l top -d 'Uids shown, most recently active first' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand watch" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand unban" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand unban" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand unban" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand mailbox" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand mailbox" -l clear -d 'Drop the waiting messages of UIDs instead of listing'
complete -c pushctl -n "__fish_pushctl_using_subcommand mailbox" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand mailbox" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand bans" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand bans" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand bans" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand events" -l type -d 'Only these types (comma-separated or repeated): connect, disconnect, online, offline, message' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand events" -l since -d 'First every event pushd still holds after this event id (a `gap` event first when some of them are gone), then new ones' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand events" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand events" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand events" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand reload" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand reload" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand reload" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand drain" -l over -d 'The window [default: pushd\'s --drain, or 30s when that is 0]; at most 1 day' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand drain" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand drain" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand drain" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand upgrade" -l binary -d 'The new binary [default: the path pushd was started from, read again]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand upgrade" -l or-drain -d 'If the new binary speaks another hand-over format (it cannot take this one\'s connections), drain this node over DUR instead, as `pushctl drain` does; then restart it with the new binary. At most 1 day' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand upgrade" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand upgrade" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand token" -l ttl -d 'How long the token is valid' -r
complete -c pushctl -n "__fish_pushctl_using_subcommand token" -l secret-file -d 'File holding the shared secret (the same as pushd\'s --auth-secret-file)' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand token" -l socket -d 'Admin socket of the daemon [default: $XDG_RUNTIME_DIR/pushd.sock, else /tmp/pushd-EUID/pushd.sock]' -r -F
complete -c pushctl -n "__fish_pushctl_using_subcommand token" -l json -d 'Print machine-readable JSON on stdout instead of text'
complete -c pushctl -n "__fish_pushctl_using_subcommand token" -s h -l help -d 'Print help'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "list" -d 'Show online uids: connections, idle time, time online, address'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "kick" -d 'Close every connection of the given uids (close code 4000)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "send" -d 'Push MESSAGE as one text frame to every connection of UID; while UID has none, it waits in UID\'s mailbox for its next connection (pushd --mailbox-ttl)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "group" -d 'Groups of uids: membership belongs to the uid and outlives its connections; a push to a group reaches every connection of every member'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "groups" -d 'The groups UID belongs to (exit 1 when none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "broadcast" -d 'Push MESSAGE as one text frame to every bound connection'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "online" -d 'Is UID online? Exit status 0 if so, 1 if not'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "stats" -d 'Version, uptime, bound addresses, connections, uids and counters'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "watch" -d 'A live view, refreshed every --interval: connections, uids, message rates and the most recently active uids (like `top`). On a terminal it redraws the screen; on a pipe it prints one snapshot after another'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "unban" -d 'Lift the ban on each UID. Exit status 0 if one was banned, 1 if none'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "mailbox" -d 'Show the uids with messages waiting for their next connection (UID, MESSAGES, BYTES, OLDEST), or with --clear empty the mailboxes of UIDs'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "bans" -d 'Show active bans and the time left on each'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "events" -d 'Print presence events as they happen (connect, disconnect, online, offline; message with --upstream), one line each, until interrupted; `--json`: one JSON object per line. In cluster mode, every node\'s'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "reload" -d 'Make pushd read its TLS certificate and key and its token secret or public key again, without closing a connection. Exit status 2, with the reason, when a file did not load: pushd keeps its previous key'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "drain" -d 'Drain this node before a deploy: it stops taking WebSocket clients (503), /v1/ready answers 503, and every connection is closed with 1012 at a random moment within the window, after what it was sent is written, so clients come back spread out. Returns when the last one is closed. The text port, HTTP API and admin socket keep serving'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "upgrade" -d 'Upgrade pushd in place, no client disconnected: pushd starts the new binary with its own arguments and environment and hands it the listeners and every plain WebSocket connection with its state (TLS ones are closed with 1012); the old process then exits. Exit 0 once the new process serves, 1 if it did not take over (the old one serves on)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "token" -d 'Mint a token for UID (for `pushd --auth token`), signed with the secret in --secret-file. Needs no running daemon'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and not __fish_seen_subcommand_from list kick send group groups broadcast online stats watch unban mailbox bans events reload drain upgrade token help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "add" -d 'Make the UIDs members of GROUP (a member\'s TTL is refreshed). Exit 1 when a uid was refused (--max-groups-per-uid, --max-memberships)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "remove" -d 'End the UIDs\' memberships of GROUP (exit 1 when none was a member)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "drop" -d 'Remove GROUP with all its members (exit 1 when it had none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "members" -d 'GROUP\'s members: UID, CONNS, EXPIRES (exit 1 when it has none)'
complete -c pushctl -n "__fish_pushctl_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "list" -d 'Every group: GROUP, MEMBERS, ONLINE'
