//! Property tests for the parsers that face untrusted input: the text-port
//! line and the admin request. Run more cases with `PROPTEST_CASES=100000`.

use proptest::prelude::*;
use pushd_proto::admin::{Request, RequestLine};
use pushd_proto::text::parse_push_line;
use pushd_proto::uid::{Uid, normalize_uid};

/// A JSON string literal for `s` (serde_json does the escaping).
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

proptest! {
    #[test]
    fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(line) = std::str::from_utf8(&bytes) {
            let _ = parse_push_line(line);
        }
        let _ = serde_json::from_slice::<RequestLine>(&bytes);
    }

    #[test]
    fn a_string_uid_is_found_whatever_surrounds_it(
        uid in "[^\\p{Cc}]{1,40}",
        before in proptest::collection::vec(("[a-z]{1,8}", any::<i32>()), 0..4),
        after in proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,20}"), 0..4),
    ) {
        prop_assume!(normalize_uid(&uid).is_ok());
        let mut fields: Vec<String> = before.iter().filter(|(k, _)| k != "uid").map(|(k, v)| format!("\"{k}\":{v}")).collect();
        fields.push(format!("\"uid\":{}", json_string(&uid)));
        fields.extend(after.iter().filter(|(k, _)| k != "uid").map(|(k, v)| format!("\"{k}\": {}", json_string(v))));
        let line = format!("{{{}}}", fields.join(","));
        let found = parse_push_line(&line).map(|l| l.uid().unwrap().as_str().to_owned());
        prop_assert_eq!(found, Ok(normalize_uid(&uid).unwrap().to_owned()));
    }

    #[test]
    fn an_integer_uid_is_its_decimal_text(n in any::<i64>()) {
        let line = format!("{{\"uid\":{n}}}");
        prop_assert_eq!(parse_push_line(&line).unwrap().uid().unwrap().to_string(), n.to_string());
    }

    #[test]
    fn an_integer_of_any_size_is_its_digits(digits in "[1-9][0-9]{0,100}", negative in any::<bool>()) {
        let text = if negative { format!("-{digits}") } else { digits };
        let line = format!("{{\"uid\": {text}, \"m\": 1}}");
        prop_assert_eq!(parse_push_line(&line).unwrap().uid().unwrap().to_string(), text);
    }

    #[test]
    fn admin_requests_round_trip(uids in proptest::collection::vec("[^\\p{Cc}]{1,20}", 0..5), reason in proptest::option::of("[ -~]{0,40}"), ban_ms in proptest::option::of(any::<u64>())) {
        let uids: Vec<Uid> = uids.iter().filter_map(|uid| Uid::parse(uid).ok()).collect();
        let line = RequestLine { version: 1, request: Request::Kick { uids, reason, ban_ms } };
        let json = serde_json::to_string(&line).unwrap();
        prop_assert_eq!(serde_json::from_str::<RequestLine>(&json).unwrap(), line);
    }
}
