//! Any Huffman block, any decoded length (first two bytes): an error or bytes, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let symbols = usize::from(u16::from_le_bytes([data[0], data[1]]));
    let _ = pyme_streaming::pzf::huffman::decode(&data[2..], symbols);
});
