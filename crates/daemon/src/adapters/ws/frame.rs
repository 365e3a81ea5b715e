//! WebSocket framing (RFC 6455 §5), the server's side: client frames in,
//! server frames out.
//!
//! pushd frames its connections itself rather than through tungstenite's
//! `WebSocket`, whose per-connection state (buffers, configuration, waker
//! proxies: about 600 bytes) every idle connection paid for. Here a connection
//! holds only the bytes of a frame that has not fully arrived, and only while
//! it has not; everything else is decoded from a per-worker buffer (`io`).
//! No extension is negotiated, so the reserved bits must be clear.

/// Opcodes (§5.2).
pub(super) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// Longest payload of a control frame (§5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest server frame header: 2 bytes, then a 64-bit length.
pub(super) const MAX_HEADER: usize = 10;

/// Why a client's bytes cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The client broke the framing rules (close code 1002).
    Protocol(&'static str),
    /// A frame or a message over `--max-message-size` (close code 1009).
    TooBig,
    /// A text message that is not UTF-8 (close code 1007).
    InvalidUtf8,
}

/// One client frame, its payload already unmasked.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Frame<'a> {
    pub(super) fin: bool,
    pub(super) opcode: u8,
    pub(super) payload: &'a [u8],
}

/// Decodes the client frame at the start of `buf`, unmasking its payload in
/// place. `Ok(None)` while the frame has not fully arrived; otherwise the frame
/// and the number of bytes it took. A header announcing more than `max` bytes
/// fails at once, before its payload is waited for.
pub(super) fn decode(buf: &mut [u8], max: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set without an extension",
        ));
    }
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("a client frame must be masked"));
    }
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
    let control = opcode & 0x8 != 0;
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {}
        _ => return Err(FrameError::Protocol("unknown opcode")),
    }
    let (len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(FrameError::Protocol(
            "a control frame must be whole and at most 125 bytes",
        ));
    }
    if len > max as u64 {
        return Err(FrameError::TooBig);
    }
    let len = len as usize;
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask: [u8; 4] = mask.try_into().expect("4 bytes");
    at += 4;
    let Some(payload) = buf.get_mut(at..at + len) else {
        return Ok(None);
    };
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    let frame = Frame {
        fin,
        opcode,
        payload,
    };
    Ok(Some((frame, at + len)))
}

/// Writes the header of an unmasked, final server frame of `len` bytes into
/// `out` and returns how many bytes it took.
pub(super) fn header(opcode: u8, len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a whole server frame to `out`.
pub(super) fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    let mut head = [0; MAX_HEADER];
    let n = header(opcode, payload.len(), &mut head);
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(payload);
}

/// The payload of a close frame: the code, then the reason.
pub(super) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Whether a peer may send close code `code` (§7.4).
pub(super) fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser sends it.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn frames_of_every_length_form_decode_and_wait_for_their_bytes() {
        for len in [0, 5, 125, 126, 1000, 0xFFFF, 0x10000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut bytes = client_frame(0x81, &payload);
            bytes.extend_from_slice(b"next");
            let total = bytes.len() - 4;
            for cut in [1, 2, 3, total - 1] {
                assert_eq!(
                    decode(&mut bytes.clone()[..cut], 1 << 20),
                    Ok(None),
                    "{len} cut {cut}"
                );
            }
            let (frame, used) = decode(&mut bytes, 1 << 20).unwrap().unwrap();
            assert_eq!((frame.fin, frame.opcode), (true, opcode::TEXT));
            assert_eq!(frame.payload, &payload[..]);
            assert_eq!(used, total);
        }
    }

    #[test]
    fn broken_frames_are_refused_with_their_reason() {
        let protocol =
            |bytes: &mut [u8]| matches!(decode(bytes, 1024), Err(FrameError::Protocol(_)));
        let mut unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert!(protocol(&mut unmasked));
        assert!(protocol(&mut client_frame(0xC1, b"hi")), "reserved bit");
        assert!(protocol(&mut client_frame(0x83, b"hi")), "opcode 3");
        assert!(protocol(&mut client_frame(0x09, b"")), "fragmented ping");
        assert!(protocol(&mut client_frame(0x89, &[0; 126])), "long ping");
        let mut long = client_frame(0x82, &[0; 2000]);
        assert_eq!(decode(&mut long[..4], 1024), Err(FrameError::TooBig));
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let mut head = [0; MAX_HEADER];
        assert_eq!(header(opcode::TEXT, 5, &mut head), 2);
        assert_eq!(head[..2], [0x81, 5]);
        assert_eq!(header(opcode::TEXT, 126, &mut head), 4);
        assert_eq!(head[..4], [0x81, 126, 0, 126]);
        assert_eq!(header(opcode::PING, 70_000, &mut head), 10);
        assert_eq!(head[..2], [0x89, 127]);
        assert_eq!(u64::from_be_bytes(head[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn close_codes_a_peer_may_send() {
        assert!(close_code_allowed(1000) && close_code_allowed(4000));
        assert!(!close_code_allowed(1005) && !close_code_allowed(999) && !close_code_allowed(5000));
    }
}
