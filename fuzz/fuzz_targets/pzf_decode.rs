//! Any bytes given to the PZF decoder: an error or a frame, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pyme_streaming::pzf::decode(data);
});
