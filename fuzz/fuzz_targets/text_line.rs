//! The text-port line parser must answer every input without panicking, and
//! a uid it returns must be a valid uid.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let line = pushd_proto::text::trim_line_ending(line);
    if let Ok(uid) = pushd_proto::text::parse_push_line(line) {
        assert_eq!(pushd_proto::uid::normalize_uid(&uid), Ok(&*uid));
        assert!(std::str::from_utf8(line).is_ok(), "a parsed line is forwarded as text");
    }
});
