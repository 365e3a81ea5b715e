//! Splits a byte stream into `\n`-terminated lines with a length limit.
//!
//! Shared by the text port and the admin socket. A line over the limit is
//! not buffered: its bytes are discarded as they arrive and it is reported
//! once, as [`Line::TooLong`], when its newline shows up, so the peer gets
//! exactly one answer per line and the connection stays usable.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// Reads more bytes into `input`. Returns false at end of stream or when
/// shutdown begins, so a session loop reads `while read_more(..).await? {}`.
pub(crate) async fn read_more(
    stream: &mut (impl AsyncRead + Unpin),
    input: &mut BytesMut,
    shutdown: &CancellationToken,
) -> std::io::Result<bool> {
    tokio::select! {
        _ = shutdown.cancelled() => Ok(false),
        read = stream.read_buf(input) => Ok(read? > 0),
    }
}

/// One complete line, or the news that one was too long.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's bytes without its `\n` or `\r\n`.
    Complete(BytesMut),
    /// A line longer than the limit was skipped.
    TooLong,
}

/// Incremental line splitter over a read buffer.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    /// Bytes of the buffer already searched for `\n`.
    scanned: usize,
    /// Inside an over-long line: drop bytes until its end.
    discarding: bool,
}

impl LineSplitter {
    /// A splitter that accepts lines of at most `max` bytes (line ending excluded).
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            max,
            scanned: 0,
            discarding: false,
        }
    }

    /// Takes the next line out of `buf`, or returns `None` when `buf` holds no
    /// complete line yet (read more and call again).
    pub(crate) fn next_line(&mut self, buf: &mut BytesMut) -> Option<Line> {
        match buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let mut line = buf.split_to(self.scanned + offset + 1);
                self.scanned = 0;
                if std::mem::take(&mut self.discarding) {
                    return Some(Line::TooLong);
                }
                line.truncate(pushd_proto::text::trim_line_ending(&line).len());
                if line.len() > self.max {
                    return Some(Line::TooLong);
                }
                Some(Line::Complete(line))
            }
            None => {
                // +1 leaves room for the `\r` of a maximal line ending in `\r\n`.
                if self.discarding || buf.len() > self.max + 1 {
                    self.discarding = true;
                    buf.clear();
                    self.scanned = 0;
                } else {
                    self.scanned = buf.len();
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(splitter: &mut LineSplitter, buf: &mut BytesMut, bytes: &[u8]) -> Vec<Line> {
        buf.extend_from_slice(bytes);
        std::iter::from_fn(|| splitter.next_line(buf)).collect()
    }

    fn complete(s: &str) -> Line {
        Line::Complete(BytesMut::from(s))
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut s = LineSplitter::new(16);
        let mut buf = BytesMut::new();
        assert_eq!(feed(&mut s, &mut buf, b"ab"), vec![]);
        assert_eq!(
            feed(&mut s, &mut buf, b"c\r\nd\n\ne"),
            vec![complete("abc"), complete("d"), complete("")]
        );
        assert_eq!(feed(&mut s, &mut buf, b"f\n"), vec![complete("ef")]);
    }

    #[test]
    fn an_overlong_line_is_one_answer_and_the_next_line_works() {
        let mut s = LineSplitter::new(4);
        let mut buf = BytesMut::new();
        assert_eq!(feed(&mut s, &mut buf, b"12345678"), vec![]);
        assert!(buf.is_empty(), "an over-long line is not buffered");
        assert_eq!(
            feed(&mut s, &mut buf, b"90\nok\n"),
            vec![Line::TooLong, complete("ok")]
        );
        assert_eq!(
            feed(&mut s, &mut buf, b"12345\n1234\r\n"),
            vec![Line::TooLong, complete("1234")]
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However the input is cut into reads, the same lines come out,
        /// and every over-long line becomes exactly one `TooLong`.
        #[test]
        fn chunking_does_not_change_the_lines(
            lines in proptest::collection::vec("[a-z\r]{0,12}", 0..20),
            cuts in proptest::collection::vec(1usize..16, 1..40),
        ) {
            let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let expected: Vec<Line> = lines
                .iter()
                .map(|l| {
                    let content = pushd_proto::text::trim_line_ending(l.as_bytes());
                    if content.len() > 8 { Line::TooLong } else { Line::Complete(BytesMut::from(content)) }
                })
                .collect();
            let mut splitter = LineSplitter::new(8);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut rest = input.as_bytes();
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                buf.extend_from_slice(chunk);
                rest = tail;
                got.extend(std::iter::from_fn(|| splitter.next_line(&mut buf)));
            }
            prop_assert_eq!(got, expected);
        }
    }
}
