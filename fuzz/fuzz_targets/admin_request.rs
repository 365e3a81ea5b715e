//! Admin request lines must parse or fail without panicking, and whatever
//! parses must serialise back to something that parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushd_proto::admin::RequestLine;

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<RequestLine>(line) {
        let again = serde_json::to_vec(&request).unwrap();
        assert_eq!(serde_json::from_slice::<RequestLine>(&again).unwrap(), request);
    }
});
