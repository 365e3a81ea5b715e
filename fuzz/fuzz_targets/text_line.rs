//! The text-port line parser must answer every input without panicking, and
//! a uid it returns must be a valid uid.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    // pushd checks UTF-8 once, when it makes the frame, then parses the text.
    let Ok(line) = std::str::from_utf8(pushd_proto::text::trim_line_ending(line)) else {
        return;
    };
    if let Ok(parsed) = pushd_proto::text::parse_push_line(line) {
        let uid = parsed.uid;
        assert_eq!(pushd_proto::uid::normalize_uid(&uid), Ok(&*uid));
        assert!(line.trim_start().starts_with('{'), "only an object is a request");
    }
});
