//! Percent-decoding of URL parts: the WebSocket URL's query (`?token=`,
//! `?since=`) and the HTTP API's uid path segments.

/// `%XX` escapes decoded, and `+` as a space when `plus_is_space` (query
/// strings, not paths); `None` when the result is not UTF-8 or an escape is cut.
pub(crate) fn decode(text: &str, plus_is_space: bool) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'%' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            b'+' if plus_is_space => bytes.push(b' '),
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn escapes_and_plus() {
        assert_eq!(decode("%E2%82%AC+%2B", true).as_deref(), Some("€ +"));
        assert_eq!(decode("a+b%2Fc", false).as_deref(), Some("a+b/c"));
        assert_eq!(decode("%zz", false), None);
        assert_eq!(decode("%4", false), None);
        assert_eq!(decode("%FF", false), None, "not UTF-8");
    }
}
