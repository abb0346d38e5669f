//! Any body a client may send to `__aggregate_h5r`: the restricted pickle reader,
//! the `.npy` reader and the protocol 0 value reader refuse it or read it, never
//! crash, and an accepted array is consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyme_streaming::server::npy::read_npy;
use pyme_streaming::server::pickle::{read, read_protocol0, Pickled};

fuzz_target!(|data: &[u8]| {
    if let Ok(Pickled::Array(array)) = read(data) {
        assert_eq!(array.data.len(), array.rows * array.dtype.itemsize());
    }
    let _ = read_npy(data);
    let _ = read_protocol0(data);
});
