//! `pushfloor`: the push-by-uid recipe served at the least possible cost, as a
//! yardstick for pushd's figures. **Not a product**: no heartbeat, no queues,
//! no limits, no close handling, no TLS; a slow client blocks every push.
//!
//! Blocking threads and no runtime. A short-lived thread per WebSocket does
//! the handshake and reads the uid; after that the connection is only its
//! file descriptor in the uid map, with no thread, buffer or timer. A thread
//! per text-port connection parses each line with pushd's own parser, builds
//! the frame once and writes it to each recipient with one `write`. The admin
//! socket answers `stats` (uids, connections) and `broadcast`, enough for
//! pushbench's `idle`, `push` and `broadcast` scenarios to drive it as they
//! drive pushd (docs/PERFORMANCE.md, "The floor").

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::thread;

use anyhow::Context;
use clap::Parser;
use pushd_proto::admin::{MailboxTotals, ReplyLine, Request, RequestLine, Response, Stats};

/// A yardstick server: the recipe at the least possible cost (not a product).
#[derive(Debug, Parser)]
#[command(name = "pushfloor")]
struct Args {
    /// WebSocket listener.
    #[arg(long, default_value = "127.0.0.1:0")]
    ws_listen: SocketAddr,
    /// Text port.
    #[arg(long, default_value = "127.0.0.1:0")]
    text_listen: SocketAddr,
    /// Admin socket (stats and broadcast only).
    #[arg(long)]
    socket: PathBuf,
}

/// Bound connections by uid; pushes only read it, so they write concurrently.
type Uids = Arc<RwLock<HashMap<String, Vec<TcpStream>>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pushd_daemon::sys::raise_nofile_limit();
    let ws = TcpListener::bind(args.ws_listen).context("WebSocket listener")?;
    let text = TcpListener::bind(args.text_listen).context("text port")?;
    let _ = std::fs::remove_file(&args.socket);
    let admin = UnixListener::bind(&args.socket).context("admin socket")?;
    // The same line pushd logs, so bench/single-node.sh finds the addresses.
    eprintln!(
        "pushfloor listening ws={} text={}",
        ws.local_addr()?,
        text.local_addr()?
    );
    let uids: Uids = Arc::default();
    spawn_accept(text, uids.clone(), serve_text);
    let admin_uids = uids.clone();
    thread::spawn(move || {
        for stream in admin.incoming().flatten() {
            let uids = admin_uids.clone();
            thread::spawn(move || serve_admin(stream, &uids));
        }
    });
    for stream in ws.incoming().flatten() {
        let uids = uids.clone();
        small_thread(move || {
            if let Ok((uid, stream)) = handshake(stream) {
                let mut map = uids.write().unwrap_or_else(|p| p.into_inner());
                map.entry(uid).or_default().push(stream);
            }
        });
    }
    Ok(())
}

/// A thread with a small stack: thousands may run at once while clients connect.
fn small_thread(work: impl FnOnce() + Send + 'static) {
    let _ = thread::Builder::new().stack_size(64 * 1024).spawn(work);
}

fn spawn_accept(listener: TcpListener, uids: Uids, serve: fn(TcpStream, &Uids)) {
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let uids = uids.clone();
            thread::spawn(move || serve(stream, &uids));
        }
    });
}

/// The WebSocket handshake and the first (text) frame, the uid.
fn handshake(mut stream: TcpStream) -> anyhow::Result<(String, TcpStream)> {
    let _ = stream.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let mut byte = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte)?;
        anyhow::ensure!(n > 0 && head.len() < 16 * 1024, "no handshake");
        head.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .context("no key")?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        stream,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    // One masked text frame from the client: the uid.
    let mut header = [0u8; 2];
    stream.read_exact(&mut header)?;
    let len = match header[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext)?;
            usize::from(u16::from_be_bytes(ext))
        }
        127 => anyhow::bail!("a uid that long"),
        n => usize::from(n),
    };
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask)?;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload)?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((String::from_utf8(payload)?.trim().to_owned(), stream))
}

/// An unmasked server text frame carrying `payload`.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// Writes `frame` to every connection of `uid` (or every connection); how many took it.
fn deliver(uids: &Uids, uid: Option<&str>, frame: &[u8]) -> u64 {
    let map = uids.read().unwrap_or_else(|p| p.into_inner());
    let mut delivered = 0;
    let targets: Box<dyn Iterator<Item = &TcpStream>> = match uid {
        Some(uid) => Box::new(map.get(uid).into_iter().flatten()),
        None => Box::new(map.values().flatten()),
    };
    for mut stream in targets {
        if stream.write_all(frame).is_ok() {
            delivered += 1;
        }
    }
    delivered
}

/// One backend: a line in, `ok` or `fail` out; the replies to what one read
/// brought are written together, as pushd does.
fn serve_text(stream: TcpStream, uids: &Uids) {
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let (mut line, mut replies) = (String::new(), Vec::new());
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = line.trim_end_matches(['\n', '\r']);
        let delivered = match pushd_proto::text::parse_push_line(text) {
            Ok(push) => match push.uid() {
                Some(uid) => deliver(uids, Some(uid.as_str()), &frame(text.as_bytes())),
                // The floor knows no groups.
                None => 0,
            },
            Err(_) => 0,
        };
        replies.extend_from_slice(if delivered > 0 { b"ok\n" } else { b"fail\n" });
        if reader.buffer().is_empty() {
            if out.write_all(&replies).is_err() {
                return;
            }
            replies.clear();
        }
    }
}

/// pushctl's protocol, `stats` and `broadcast` only.
fn serve_admin(stream: UnixStream, uids: &Uids) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let reply = match serde_json::from_str::<RequestLine>(&line).map(|r| r.request) {
            Ok(Request::Stats) => {
                let map = uids.read().unwrap_or_else(|p| p.into_inner());
                let connections = map.values().map(|v| v.len() as u64).sum();
                ReplyLine::ok(Response::Stats(Box::new(Stats {
                    version: "pushfloor".into(),
                    uptime_ms: 0,
                    ws_listen: String::new(),
                    text_listen: String::new(),
                    socket: String::new(),
                    connections,
                    uids: map.len() as u64,
                    text_connections: 0,
                    bans: 0,
                    group_memberships: 0,
                    mailbox: MailboxTotals::default(),
                    event_subscribers: 0,
                    counters: Default::default(),
                    cluster: None,
                })))
            }
            Ok(Request::Broadcast { message }) => {
                let connections = deliver(uids, None, &frame(message.as_bytes()));
                ReplyLine::ok(Response::Delivered {
                    connections,
                    queued: false,
                })
            }
            _ => ReplyLine::error("pushfloor answers stats and broadcast only"),
        };
        let mut bytes = serde_json::to_vec(&reply).expect("replies serialize");
        bytes.push(b'\n');
        if out.write_all(&bytes).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_in_the_three_sizes() {
        assert_eq!(&frame(b"hi")[..2], &[0x81, 2]);
        let medium = frame(&[b'x'; 300]);
        assert_eq!(&medium[..4], &[0x81, 126, 1, 44]);
        assert_eq!(medium.len(), 304);
        let large = frame(&vec![b'x'; 70_000]);
        assert_eq!(large[1], 127);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
    }

    /// A real WebSocket client binds, and a pushed line reaches it as one text frame.
    #[test]
    fn a_client_binds_and_gets_its_push() {
        use tokio_tungstenite::tungstenite::{Message, connect};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let uids: Uids = Arc::default();
        let bound = uids.clone();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let (uid, stream) = handshake(stream).unwrap();
            bound.write().unwrap().entry(uid).or_default().push(stream);
        });
        let (mut client, _) = connect(format!("ws://{addr}/")).unwrap();
        client.send(Message::text(" 42 ")).unwrap();
        server.join().unwrap();
        let line = br#"{"uid":"42","m":1}"#;
        assert_eq!(deliver(&uids, Some("42"), &frame(line)), 1);
        assert_eq!(deliver(&uids, Some("43"), &frame(line)), 0);
        let got = client.read().unwrap();
        assert_eq!(got, Message::text(r#"{"uid":"42","m":1}"#));
    }
}
