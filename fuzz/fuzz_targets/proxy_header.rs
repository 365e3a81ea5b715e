//! The PROXY header parser must answer every input without panicking, never
//! claim a header longer than the bytes it was given, and give the same
//! answer for a header however the bytes after it continue.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushd_proto::proxy_header::{Parsed, parse};

fuzz_target!(|bytes: &[u8]| {
    match parse(bytes) {
        Ok(Parsed::Header { len, source }) => {
            assert!(len <= bytes.len());
            let mut longer = bytes[..len].to_vec();
            longer.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(parse(&longer), Ok(Parsed::Header { len, source }));
        }
        Ok(Parsed::Incomplete { at_least }) => assert!(at_least > bytes.len()),
        Err(_) => {}
    }
});
