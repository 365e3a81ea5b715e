//! Hostile input: broken frames, odd fragmentation, floods, mangled admin
//! requests. Each must fail alone and leave everyone else served.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Pushd, STEP, within};

/// A WebSocket client speaking raw frames, to send what well-behaved
/// libraries refuse to.
struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    async fn connect(pushd: &Pushd) -> RawWs {
        let mut stream = TcpStream::connect(pushd.ws).await.unwrap();
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: pushd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8];
            within(STEP, "handshake response", stream.read_exact(&mut byte))
                .await
                .unwrap();
            response.push(byte[0]);
        }
        assert!(
            response.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        RawWs { stream }
    }

    /// Sends one frame; client frames are masked unless `masked` is false.
    async fn frame(&mut self, fin: bool, opcode: u8, payload: &[u8], masked: bool) {
        // The server may already have closed; a failed write is fine here.
        let _ = self
            .stream
            .write_all(&encode(fin, opcode, payload, masked))
            .await;
    }

    /// The next server frame: its opcode and payload (`None` at the end of the stream).
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        within(STEP, "a server frame", async {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await.ok()?;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).await.ok()?;
                len = u64::from(u16::from_be_bytes(ext));
            } else if len == 127 {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).await.ok()?;
                len = u64::from_be_bytes(ext);
            }
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await.ok()?;
            Some((head[0] & 0x0f, payload))
        })
        .await
    }

    /// Reads server frames until a close frame (its code) or the end of the stream.
    async fn close_code(&mut self) -> Option<u16> {
        loop {
            let (opcode, payload) = self.next_frame().await?;
            if opcode == CLOSE {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
    }
}

/// A client frame's bytes, masked unless `masked` is false.
fn encode(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x11, 0x22, 0x33, 0x44];
    if masked {
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let pushd = Pushd::start(&[]).await;
    let mut bystander = pushd.bound_client("ok").await;
    for bound_first in [false, true] {
        let mut raw = RawWs::connect(&pushd).await;
        if bound_first {
            raw.frame(true, TEXT, b"42", true).await;
            pushd.wait_connections("42", 1).await;
        }
        raw.frame(true, TEXT, b"\xff\xfe", true).await;
        assert_eq!(raw.close_code().await, Some(1007));
    }
    assert_eq!(pushd.ctl(&["send", "ok", "still fine"]).await.status, 0);
    assert_eq!(bystander.recv_text().await, "still fine");
}

#[tokio::test]
async fn an_unmasked_client_frame_closes_with_1002() {
    let pushd = Pushd::start(&[]).await;
    let mut raw = RawWs::connect(&pushd).await;
    raw.frame(true, TEXT, b"42", false).await;
    assert_eq!(raw.close_code().await, Some(1002));
    assert!(!pushd.is_online("42").await);
}

#[tokio::test]
async fn a_fragmented_uid_is_reassembled_and_fragments_count_toward_the_size_limit() {
    let pushd = Pushd::start(&["--max-message-size", "1024"]).await;
    let mut raw = RawWs::connect(&pushd).await;
    raw.frame(false, TEXT, b"4", true).await;
    raw.frame(false, CONTINUATION, b"", true).await;
    raw.frame(true, CONTINUATION, b"2", true).await;
    pushd.wait_connections("42", 1).await;

    let mut big = RawWs::connect(&pushd).await;
    big.frame(false, TEXT, &[b'a'; 600], true).await;
    big.frame(true, CONTINUATION, &[b'a'; 600], true).await;
    assert_eq!(big.close_code().await, Some(1009));
}

#[tokio::test]
async fn frames_are_read_however_the_stream_cuts_them() {
    let pushd = Pushd::start(&[]).await;
    // Several frames in one write: a ping, the uid in two fragments, a heartbeat.
    let mut together = RawWs::connect(&pushd).await;
    let mut bytes = encode(true, PING, b"p1", true);
    bytes.extend(encode(false, TEXT, b"4", true));
    bytes.extend(encode(true, CONTINUATION, b"2", true));
    bytes.extend(encode(true, TEXT, b"ping", true));
    together.stream.write_all(&bytes).await.unwrap();
    assert_eq!(together.next_frame().await, Some((PONG, b"p1".to_vec())));
    pushd.wait_connections("42", 1).await;

    // The same, one byte per write.
    let mut trickle = RawWs::connect(&pushd).await;
    for byte in encode(true, TEXT, "ü".repeat(60).as_bytes(), true) {
        trickle.stream.write_all(&[byte]).await.unwrap();
        trickle.stream.flush().await.unwrap();
    }
    pushd.wait_connections(&"ü".repeat(60), 1).await;

    assert_eq!(pushd.ctl(&["send", "42", "to 42"]).await.status, 0);
    assert_eq!(together.next_frame().await, Some((TEXT, b"to 42".to_vec())));
}

#[tokio::test]
async fn a_client_close_is_answered_and_a_forbidden_close_code_is_a_protocol_error() {
    let pushd = Pushd::start(&[]).await;
    let mut polite = RawWs::connect(&pushd).await;
    polite.frame(true, TEXT, b"7", true).await;
    pushd.wait_connections("7", 1).await;
    polite
        .frame(true, CLOSE, &4321u16.to_be_bytes(), true)
        .await;
    assert_eq!(polite.close_code().await, Some(4321));
    assert_eq!(
        polite.next_frame().await,
        None,
        "the server closes the stream"
    );

    let mut rude = RawWs::connect(&pushd).await;
    rude.frame(true, CLOSE, &1005u16.to_be_bytes(), true).await;
    assert_eq!(rude.close_code().await, Some(1002));
}

#[tokio::test]
async fn an_oversized_handshake_is_dropped_and_counted() {
    let pushd = Pushd::start(&[]).await;
    let mut stream = TcpStream::connect(pushd.ws).await.unwrap();
    let header = format!("GET / HTTP/1.1\r\nX-Padding: {}\r\n", "x".repeat(9000));
    let _ = stream.write_all(header.as_bytes()).await;
    let mut rest = Vec::new();
    let read = within(STEP, "the server to drop it", stream.read_to_end(&mut rest)).await;
    assert!(
        read.is_err() || rest.is_empty(),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(pushd.stats().await["counters"]["handshakes_failed"], 1);
}

#[tokio::test]
async fn a_flood_of_text_port_connections_is_served_and_leaves_nothing_behind() {
    // The original recipe's answers (no mailbox), so every reply fits five bytes.
    let pushd = Pushd::start(&["--mailbox-ttl", "0"]).await;
    let mut client = pushd.bound_client("42").await;
    let replies = futures_util::future::join_all((0..500).map(|i| {
        let text = pushd.text;
        async move {
            let mut stream = TcpStream::connect(text).await.unwrap();
            let uid = if i % 2 == 0 { "42" } else { "nobody" };
            stream
                .write_all(format!("{{\"uid\":\"{uid}\",\"i\":{i}}}\n").as_bytes())
                .await
                .unwrap();
            let mut reply = [0u8; 5];
            let n = within(STEP, "reply", stream.read(&mut reply))
                .await
                .unwrap();
            String::from_utf8_lossy(&reply[..n]).into_owned()
        }
    }))
    .await;
    assert_eq!(replies.iter().filter(|r| *r == "ok\n").count(), 250);
    assert_eq!(replies.iter().filter(|r| *r == "fail\n").count(), 250);
    for _ in 0..250 {
        client.recv_text().await;
    }
    crate::harness::eventually(STEP, "text connections to close", || async {
        pushd.stats().await["text_connections"] == 0
    })
    .await;
}

#[tokio::test]
async fn admin_requests_that_are_oversized_or_cut_mid_line_fail_alone() {
    let pushd = Pushd::start(&[]).await;
    let socket = pushd.socket.clone();
    let replies = tokio::task::spawn_blocking(move || {
        // Cut mid-line, then gone.
        let mut cut = UnixStream::connect(&socket).unwrap();
        cut.write_all(br#"{"version":1,"cmd":"li"#).unwrap();
        drop(cut);
        // Over the 64 MiB line limit, then a good request on the same connection.
        let stream = UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            (0..2)
                .map(|_| {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    line
                })
                .collect::<Vec<_>>()
        });
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..65 {
            writer.write_all(&chunk).unwrap();
        }
        writer
            .write_all(b"\n{\"version\":1,\"cmd\":\"ping\"}\n")
            .unwrap();
        reader.join().unwrap()
    })
    .await
    .unwrap();
    assert!(replies[0].contains("request longer than"), "{replies:?}");
    assert!(replies[1].contains("pong"), "{replies:?}");
    assert_eq!(pushd.ctl(&["stats"]).await.status, 0);
}
