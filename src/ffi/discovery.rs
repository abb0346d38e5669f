//! Finding a cluster's servers by name from C (`n_cluster_servers`).

use std::ffi::c_char;

use super::status::{status_of, STREAMER_OK};

/// Counts the live data servers of the cluster named `serverfilter` (as
/// PYME's `n_cluster_servers`), looking over mDNS (multicast on the network,
/// 2 s) and in the local registry. `*out` is written on success; finding none
/// is `STREAMER_ERR_DISCOVERY`.
/// Consumes nothing.
///
/// # Safety
/// `serverfilter` is NULL or a NUL-terminated string; `out` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn n_cluster_servers(serverfilter: *const c_char, out: *mut usize) -> i32 {
    ffi_panic_boundary! {
        let out = try_out!(out);
        let serverfilter = match c_string!(serverfilter) {
            Ok(text) => text,
            Err((status, _)) => return status,
        };
        match crate::discovery::n_cluster_servers(serverfilter) {
            Ok(count) => {
                *out = count;
                STREAMER_OK
            }
            Err(error) => status_of(&crate::Error::Discovery(error)),
        }
    }
}
