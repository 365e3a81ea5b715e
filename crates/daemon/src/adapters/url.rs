//! The parts of a URL the adapters read, parsed in one place: a query's
//! parameters (the WebSocket URL's `?token=` and `?since=`, the HTTP API's
//! `?type=` and `?transient`) and percent-decoding (those, and the HTTP
//! API's uid path segments).

/// The raw value of parameter `name` in `query` (`name=value`), if present.
pub(crate) fn raw_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The value of parameter `name`, percent-decoded; `None` also when it does
/// not decode to UTF-8.
pub(crate) fn param(query: Option<&str>, name: &str) -> Option<String> {
    decode(raw_param(query, name)?, true)
}

/// Whether flag `name` is set: `?name`, `?name=1` or `?name=true`.
pub(crate) fn flag(query: Option<&str>, name: &str) -> bool {
    let set = |pair: &str| matches!(pair.strip_prefix(name), Some("" | "=1" | "=true"));
    query.into_iter().flat_map(|q| q.split('&')).any(set)
}

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
    use super::*;

    #[test]
    fn parameters_are_found_and_decoded() {
        let query = Some("token=a.b.c&since=17330-42&x=%E2%82%AC+%2B");
        assert_eq!(param(query, "token").as_deref(), Some("a.b.c"));
        assert_eq!(param(query, "since").as_deref(), Some("17330-42"));
        assert_eq!(param(query, "x").as_deref(), Some("€ +"));
        assert_eq!(param(query, "y"), None);
        assert_eq!(param(Some("since=%zz"), "since"), None);
        assert_eq!(raw_param(Some("since=%zz"), "since"), Some("%zz"));
        assert_eq!(param(None, "since"), None);
    }

    #[test]
    fn flags() {
        assert!(flag(Some("transient=1"), "transient"));
        assert!(flag(Some("a=b&transient"), "transient"));
        assert!(flag(Some("transient=true"), "transient"));
        assert!(!flag(Some("transient=0"), "transient"));
        assert!(!flag(Some("transients"), "transient"));
        assert!(!flag(None, "transient"));
    }

    #[test]
    fn escapes_and_plus() {
        assert_eq!(decode("%E2%82%AC+%2B", true).as_deref(), Some("€ +"));
        assert_eq!(decode("a+b%2Fc", false).as_deref(), Some("a+b/c"));
        assert_eq!(decode("%zz", false), None);
        assert_eq!(decode("%4", false), None);
        assert_eq!(decode("%FF", false), None, "not UTF-8");
    }
}
