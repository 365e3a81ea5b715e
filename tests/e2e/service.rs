//! What a service manager and a log shipper see: systemd readiness and
//! stopping notifications, JSON logs.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::harness::{Pushd, STEP, within};

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// pushd with `NOTIFY_SOCKET` set to a datagram socket in `dir`, as systemd
/// runs it, and that socket (reads time out after `STEP`).
async fn under_notify(dir: &std::path::Path) -> (Pushd, UnixDatagram) {
    let notify = dir.join("notify");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(STEP)).unwrap();
    let socket = dir.join("pushd.sock");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushd"));
    command
        .env("NOTIFY_SOCKET", &notify)
        .args(crate::harness::loopback_args(&socket));
    (Pushd::spawn(command, &socket).await.unwrap(), listener)
}

#[tokio::test]
async fn pushd_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pushd, listener) = under_notify(dir.path()).await;
    let ready = tokio::task::spawn_blocking({
        let listener = listener.try_clone().unwrap();
        move || recv(&listener)
    })
    .await
    .unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving ws={}", pushd.ws)),
        "{ready:?}"
    );
    assert!(
        pushd.socket.exists(),
        "ready means the admin socket is there too"
    );
    pushd.signal(libc::SIGTERM);
    let stopping = tokio::task::spawn_blocking(move || recv(&listener))
        .await
        .unwrap();
    assert_eq!(stopping, "STOPPING=1\n");
    assert_eq!(pushd.wait(STEP).await, Some(0));
}

/// SPEC "Live upgrade": under systemd the new process reports itself as the
/// main process, so that systemd follows it (the unit has `NotifyAccess=all`).
#[tokio::test]
async fn after_an_upgrade_the_new_process_tells_systemd_it_is_the_main_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pushd, listener) = under_notify(dir.path()).await;
    let upgraded = pushd.ctl(&["upgrade"]).await;
    assert_eq!(upgraded.status, 0, "{upgraded:?}");
    let new_pid = crate::upgrade::new_pid(&upgraded.stdout);
    let _new = crate::upgrade::NewProcess(new_pid);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    let told = tokio::task::spawn_blocking(move || {
        let mut told = Vec::new();
        while !told.iter().any(|m: &String| m.starts_with("MAINPID=")) {
            told.push(recv(&listener));
        }
        told
    })
    .await
    .unwrap();
    assert!(told.contains(&format!("MAINPID={new_pid}\n")), "{told:?}");
    assert!(
        !told.iter().any(|m| m.contains("STOPPING")),
        "the old one left quietly: {told:?}"
    );
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_bound_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushd"))
        .env("RUST_LOG", "debug")
        .env("PUSHD_STATE_FILE", dir.path().join("pushd.state"))
        .args([
            "--log-format",
            "json",
            "--ws-listen",
            "127.0.0.1:0",
            "--text-listen",
            "127.0.0.1:0",
            "--socket",
        ])
        .arg(dir.path().join("s"))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = within(STEP, "the listening line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("pushd exited");
            let value: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            if value["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening"))
            {
                return value;
            }
        }
    })
    .await;
    assert_eq!(started["level"], "INFO");
    let ws: std::net::SocketAddr = started["fields"]["ws"].as_str().unwrap().parse().unwrap();
    // A connection's bind and close are one debug line each, with uid and peer.
    let mut client = crate::harness::WsClient::connect(ws).await;
    client.send_text("42").await;
    let bound = within(STEP, "the bound line", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("pushd exited");
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value["fields"]["message"] == "connection bound" {
                return value;
            }
        }
    })
    .await;
    assert_eq!(bound["fields"]["uid"], "42");
    assert!(
        bound["fields"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

/// Fetches `path` from the metrics listener: its body (or the status, for
/// anything but 200).
pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = crate::http::Http::new()
        .get(&format!("http://{addr}{path}"))
        .await;
    if status == 200 {
        body
    } else {
        format!("status {status}")
    }
}

/// The `Content-Type` of `path` on the metrics listener.
async fn content_type(addr: std::net::SocketAddr, path: &str) -> String {
    let url = format!("http://{addr}{path}");
    let response = crate::http::Http::new().send("GET", &url, None, "").await;
    let value = &response.headers()["content-type"];
    value.to_str().unwrap().to_owned()
}

/// The value of one sample line (`name value` or `name{labels} value`).
pub(crate) fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

#[tokio::test]
async fn metrics_are_scraped_in_prometheus_text_format_and_move() {
    let pushd = Pushd::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let log = pushd.log.lock().unwrap().clone();
    let addr = crate::harness::field(
        log.lines().find(|l| l.contains(" listening ")).unwrap(),
        "metrics=",
    );
    let before = http_get(addr, "/metrics").await;
    assert!(before.starts_with("# HELP"), "{before}");
    let format = content_type(addr, "/metrics").await;
    assert!(format.contains("application/openmetrics-text"), "{format}");
    assert_eq!(sample(&before, "pushd_connections"), 0.0);

    let mut client = pushd.bound_client("42").await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":42}"#).await, "ok");
    assert_eq!(backend.request(r#"{"uid":7}"#).await, "queued");
    client.recv_text().await;
    pushd.ctl(&["kick", "42"]).await;

    let after = http_get(addr, "/metrics").await;
    assert_eq!(sample(&after, "pushd_connections_opened_total"), 1.0);
    assert_eq!(sample(&after, "pushd_binds_total"), 1.0);
    assert_eq!(sample(&after, "pushd_messages_delivered_total"), 1.0);
    assert_eq!(
        sample(&after, r#"pushd_text_requests_total{result="ok"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, r#"pushd_text_requests_total{result="queued"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, r#"pushd_mailbox_messages_total{event="stored"}"#),
        1.0
    );
    assert_eq!(sample(&after, "pushd_mailbox_waiting"), 1.0);
    assert_eq!(
        sample(&after, r#"pushd_disconnects_total{reason="kicked"}"#),
        1.0
    );
    assert_eq!(
        sample(&after, "pushd_text_push_duration_seconds_count"),
        2.0
    );
    assert_eq!(http_get(addr, "/other").await, "status 404");
}

/// `pushctl list` as another user (uid and gid `id`), against `socket`, with
/// the pushctl binary at `pushctl` (one that user may execute).
async fn ctl_as(
    id: u32,
    pushctl: &std::path::Path,
    socket: &std::path::Path,
) -> crate::harness::Ctl {
    let mut command = Command::new(pushctl);
    command
        .uid(id)
        .gid(id)
        .arg("--socket")
        .arg(socket)
        .arg("list");
    crate::harness::run_ctl(command, None).await
}

#[tokio::test]
async fn socket_group_lets_its_members_and_only_them_use_pushctl() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // /proc/self belongs to our effective uid; only root may run pushctl as another user.
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: needs root to run pushctl as another user");
        return;
    }
    const NOBODY: u32 = 65534; // nobody:nogroup on Debian
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The build's own pushctl may sit where nobody cannot reach it (a clone in a
    // directory only its owner can enter): nobody runs a copy from here.
    let pushctl = dir.path().join("pushctl");
    std::fs::copy(env!("CARGO_BIN_EXE_pushctl"), &pushctl).unwrap();
    std::fs::set_permissions(&pushctl, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Default: 0600, owner only. Another user is refused, and told which socket.
    let private = dir.path().join("private.sock");
    let _owner_only = Pushd::start_at(&private, &[]).await;
    assert_eq!(std::fs::metadata(&private).unwrap().mode() & 0o777, 0o600);
    let refused = ctl_as(NOBODY, &pushctl, &private).await;
    assert_eq!(refused.status, 2, "{refused:?}");
    assert!(refused.stderr.contains("private.sock"), "{refused:?}");

    // --socket-group: the group owns it with 0660, and its members get in.
    let shared = dir.path().join("shared.sock");
    let _grouped = Pushd::start_at(&shared, &["--socket-group", "nogroup"]).await;
    let meta = std::fs::metadata(&shared).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, NOBODY));
    let member = ctl_as(NOBODY, &pushctl, &shared).await;
    assert_eq!(member.status, 0, "{member:?}");

    // A group that does not exist stops pushd before it touches the path.
    let typo = dir.path().join("typo.sock");
    let err = Pushd::try_start_at(&typo, &["--socket-group", "no-such-group-here"])
        .await
        .err()
        .expect("pushd must refuse an unknown group");
    assert!(err.contains("no group named"), "{err}");
    assert!(!typo.exists());
}

/// The admin socket's fallback place (no `XDG_RUNTIME_DIR`) is a directory of
/// the user's own: pushd creates it with mode 0700, and pushd and pushctl both
/// refuse it, naming it (exit 2), when it is open to others or belongs to
/// another user, who could otherwise squat it or stand in for pushd.
/// (Issue 22: `/tmp/pushd-EUID.sock` could be taken by anyone first.)
#[tokio::test]
async fn the_fallback_socket_place_is_private_and_checked() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: needs root to give the directory to another user");
        return;
    }
    let dir = std::path::PathBuf::from("/tmp/pushd-0");
    if dir.exists() {
        eprintln!("skipped: {} is in use on this machine", dir.display());
        return;
    }
    let default_env = |command: &mut Command| {
        command
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("PUSHD_SOCKET")
            .env("PUSHD_STATE_FILE", "none");
    };
    let pushd = |extra: &'static [&'static str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushd"));
        default_env(&mut command);
        command
            .args(["--ws-listen", "127.0.0.1:0", "--text-listen", "127.0.0.1:0"])
            .args(extra)
            .kill_on_drop(true);
        command
    };
    let pushctl_stats = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pushctl"));
        default_env(&mut command);
        command.arg("stats");
        crate::harness::run_ctl(command, None)
    };
    // Someone else's, or open to others: both programs refuse, naming it.
    std::fs::create_dir(&dir).unwrap();
    for (mode, owner) in [(0o755, 0), (0o700, 65534)] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&dir, Some(owner), Some(owner)).unwrap();
        let refused = within(STEP, "pushd to refuse", pushd(&[]).output())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("/tmp/pushd-0"), "{stderr}");
        let ctl = pushctl_stats().await;
        assert_eq!(ctl.status, 2, "{ctl:?}");
        assert!(ctl.stderr.contains("/tmp/pushd-0"), "{ctl:?}");
    }
    // Missing: pushd makes it, 0700, and serves there; pushctl finds it.
    std::fs::remove_dir(&dir).unwrap();
    let socket = dir.join("pushd.sock");
    let daemon = Pushd::spawn(pushd(&[]), &socket)
        .await
        .expect("pushd starts");
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o700, 0));
    assert_eq!(pushctl_stats().await.status, 0);
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
