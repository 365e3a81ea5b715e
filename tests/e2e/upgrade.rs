//! SPEC "Live upgrade, no client disconnected": `pushctl upgrade` and SIGUSR2
//! with the real binary, clients that must see nothing, and the failed path.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::{Pushd, STEP, WsClient, eventually, within};
use crate::resume::{bound_v2, split};

/// Kills the process that took over when the test ends (it is not the
/// harness's child: the old pushd started it).
pub struct NewProcess(pub i32);

impl Drop for NewProcess {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// The new process id in `pushctl upgrade`'s line.
pub fn new_pid(line: &str) -> i32 {
    let after = line.rsplit("(pid ").next().unwrap();
    after.split(')').next().unwrap().parse().unwrap()
}

/// Pushes `lines` through the text port one at a time, each answered `ok`;
/// a connection that ends without an answer (an upgrade closes it after its
/// request in flight) is opened again and the line sent again.
pub async fn push_all(text: std::net::SocketAddr, lines: Vec<String>, pace: Duration) {
    let mut connection: Option<(BufReader<tokio::net::tcp::OwnedReadHalf>, _)> = None;
    for line in lines {
        loop {
            if connection.is_none() {
                let stream = within(STEP, "text port", TcpStream::connect(text))
                    .await
                    .unwrap();
                let (read, write) = stream.into_split();
                connection = Some((BufReader::new(read), write));
            }
            let (read, write) = connection.as_mut().unwrap();
            let mut reply = String::new();
            let sent = write
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_ok();
            let read = sent
                && within(STEP, "a reply", read.read_line(&mut reply))
                    .await
                    .unwrap_or(0)
                    > 0;
            if !read {
                connection = None;
                continue;
            }
            assert_eq!(reply.trim(), "ok", "{line}");
            break;
        }
        tokio::time::sleep(pace).await;
    }
}

/// Every plain WebSocket connection, raw or `pushd.v2`, bound or not yet,
/// goes on in the new process as if nothing happened: no close, every push
/// answered `ok` before, during and after the upgrade arrives once, in order;
/// the unbound one binds afterwards; the mailbox and the ids go on.
#[tokio::test]
async fn an_upgrade_hands_every_plain_connection_over_and_clients_see_nothing() {
    let mut pushd = Pushd::start(&[]).await;
    let old_pid = pushd.pid();
    let raw: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let v2: Vec<String> = (0..4).map(|i| format!("v{i}")).collect();
    let mut clients = Vec::new();
    for uid in &raw {
        clients.push((uid.clone(), false, pushd.bound_client(uid).await));
    }
    for uid in &v2 {
        clients.push((uid.clone(), true, bound_v2(&pushd, uid, None).await));
    }
    let mut unbound = WsClient::connect(pushd.ws).await;
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"away","n":1}"#).await, "queued");
    drop(backend);

    const ROUNDS: usize = 60;
    let uids: Vec<String> = raw.iter().chain(&v2).cloned().collect();
    let mut lines = Vec::new();
    for seq in 0..ROUNDS {
        for uid in &uids {
            lines.push(format!(r#"{{"uid":"{uid}","seq":{seq}}}"#));
        }
    }
    let pusher = tokio::spawn(push_all(pushd.text, lines, Duration::from_millis(2)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upgraded = pushd.ctl(&["upgrade"]).await;
    assert_eq!(upgraded.status, 0, "{upgraded:?}");
    let _new = NewProcess(new_pid(&upgraded.stdout));
    assert!(
        upgraded.stdout.starts_with("upgraded: pushd "),
        "{upgraded:?}"
    );
    assert_ne!(new_pid(&upgraded.stdout), old_pid);
    assert_eq!(pushd.wait(STEP).await, Some(0), "the old process goes");
    within(Duration::from_secs(30), "the pushes", pusher)
        .await
        .unwrap();

    let mut last_id = None;
    for (uid, is_v2, client) in &mut clients {
        for seq in 0..ROUNDS {
            let frame = client.recv_text().await;
            let payload = if *is_v2 {
                let (id, payload) = split(&frame);
                last_id = Some(id);
                payload
            } else {
                frame
            };
            assert_eq!(payload, format!(r#"{{"uid":"{uid}","seq":{seq}}}"#));
        }
        assert_eq!(
            client.recv_text_within(Duration::from_millis(50)).await,
            None
        );
    }
    // The new process serves the admin socket, the mailbox, and binds.
    unbound.send_text("late").await;
    eventually(STEP, "the unbound client to bind", || {
        pushd.is_online("late")
    })
    .await;
    let mut away = pushd.bound_client("away").await;
    assert_eq!(away.recv_text().await, r#"{"uid":"away","n":1}"#);
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"v0","after":true}"#).await, "ok");
    let (id, _) = split(&clients[raw.len()].2.recv_text().await);
    let number = |id: &str| {
        id.split_once('-')
            .map(|(b, n)| (b.to_owned(), n.parse::<u64>().unwrap()))
    };
    let (before, after) = (
        number(last_id.as_deref().unwrap()).unwrap(),
        number(&id).unwrap(),
    );
    assert_eq!(before.0, after.0, "the same boot");
    assert!(after.1 > before.1, "ids go on increasing");
    let stats = pushd.stats().await;
    assert_eq!(
        stats["connections"],
        (raw.len() + v2.len() + 2) as u64,
        "{stats}"
    );
}

/// A new binary that fails (here one that is not pushd at all) leaves the old
/// process serving with its connections untouched: pushctl exits 1 and says why.
#[tokio::test]
async fn a_failed_upgrade_leaves_the_old_pushd_serving_with_nothing_closed() {
    let pushd = Pushd::start(&[]).await;
    let mut page = pushd.bound_client("stays").await;
    let failed = pushd.ctl(&["upgrade", "--binary", "/bin/false"]).await;
    assert_eq!(failed.status, 1, "{failed:?}");
    assert!(failed.stderr.contains("upgrade failed"), "{failed:?}");
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"stays","n":1}"#).await, "ok");
    assert_eq!(page.recv_text().await, r#"{"uid":"stays","n":1}"#);
    let newcomer = pushd.bound_client("new").await;
    drop(newcomer);
    let missing = pushd
        .ctl(&["upgrade", "--binary", "/nonexistent/pushd"])
        .await;
    assert_eq!(missing.status, 1, "{missing:?}");
    assert!(missing.stderr.contains("/nonexistent/pushd"), "{missing:?}");
    assert_eq!(backend.request(r#"{"uid":"stays","n":2}"#).await, "ok");
    assert_eq!(page.recv_text().await, r#"{"uid":"stays","n":2}"#);
}

/// SIGUSR2 upgrades too (the default binary: the one pushd was started from).
#[tokio::test]
async fn sigusr2_upgrades_to_the_binary_pushd_was_started_from() {
    let mut pushd = Pushd::start(&[]).await;
    let mut page = pushd.bound_client("u").await;
    pushd.signal(libc::SIGUSR2);
    assert_eq!(pushd.wait(STEP).await, Some(0));
    let log = pushd.log.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("upgraded: the new pushd serves"))
        .unwrap();
    let pid: i32 = line
        .split("new_pid=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _new = NewProcess(pid);
    let mut backend = pushd.text_client().await;
    assert_eq!(backend.request(r#"{"uid":"u","n":1}"#).await, "ok");
    assert_eq!(page.recv_text().await, r#"{"uid":"u","n":1}"#);
}

/// A stand-in for a pushd of another hand-over format: says hello in format
/// 99 (postcard: variant 0, then format, version, pid as varints) and exits.
const OTHER_FORMAT: &str = r#"#!/usr/bin/env python3
import os, socket, struct
def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)
channel = socket.socket(fileno=int(os.environ["PUSHD_UPGRADE_FD"]))
version = b"9.9.9"
body = varint(0) + varint(99) + varint(len(version)) + version + varint(os.getpid())
channel.sendall(struct.pack("<IB", len(body), 0) + body)
channel.recv(4096)
"#;

/// A new binary that speaks another hand-over format is refused, cleanly:
/// the old pushd serves on with nothing closed, unless the operator asked to
/// drain instead (`--or-drain`), which closes every connection with 1012.
#[tokio::test]
async fn a_new_binary_of_another_format_is_refused_and_a_drain_only_if_asked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("pushd-9.9.9");
    std::fs::write(&fake, OTHER_FORMAT).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.to_str().unwrap();
    let pushd = Pushd::start(&[]).await;
    let mut page = pushd.bound_client("p").await;
    let refused = pushd.ctl(&["upgrade", "--binary", fake]).await;
    assert_eq!(refused.status, 1, "{refused:?}");
    assert!(refused.stderr.contains("format 99"), "{refused:?}");
    assert_eq!(pushd.ctl(&["send", "p", "still here"]).await.status, 0);
    assert_eq!(page.recv_text().await, "still here");
    let drained = pushd
        .ctl(&["upgrade", "--binary", fake, "--or-drain", "500ms"])
        .await;
    assert_eq!(drained.status, 1, "{drained:?}");
    assert_eq!(
        drained.stdout.trim(),
        "drained instead: closed 1 connection; restart pushd"
    );
    assert_eq!(page.closed(STEP).await.code, Some(1012));
}
