//! Keeps the module that holds this library loaded until the process ends.
//!
//! The library starts threads (senders, receivers, helpers) that may still run
//! after the host believes it is done with the library: a LabVIEW VI that unloads
//! the DLL, a plugin host that `dlclose`s a device adapter, a bounded close that
//! detached a thread. If the code those threads run were unmapped, the process
//! would crash later, far from the cause. So the first call into the C API pins
//! the module containing this code, whether that is the library itself or a
//! plugin that linked the static library:
//!
//! - Linux: `dlopen(own path, RTLD_NOLOAD | RTLD_NODELETE)` (the shared library
//!   is also linked with `-z nodelete`, so it is pinned from the moment it loads);
//! - Windows: `GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_PIN | ..._FROM_ADDRESS)`.
//!
//! A later `dlclose` / `FreeLibrary` then succeeds but does not unmap anything; a
//! new version of the library is only picked up by a new process (docs/WINDOWS.md:
//! close LabVIEW to replace the DLL). It may not do anything else.

use std::sync::Once;

/// Pins the module on the first call; a single atomic load after that.
pub(crate) fn pin_this_module() {
    static PINNED: Once = Once::new();
    PINNED.call_once(pin);
}

#[cfg(target_os = "linux")]
fn pin() {
    let address = pin_this_module as *const libc::c_void;
    // SAFETY: dladdr fills `info` for an address of this module; dlopen with
    // RTLD_NOLOAD only finds an object already loaded (adding one reference,
    // never released) and RTLD_NODELETE marks it never to be unloaded.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address, &mut info) != 0 && !info.dli_fname.is_null() {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_LAZY | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            );
        }
    }
}

#[cfg(windows)]
fn pin() {
    const GET_MODULE_HANDLE_EX_FLAG_PIN: u32 = 0x1;
    const GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS: u32 = 0x4;
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleExW(
            flags: u32,
            module_name: *const u16,
            module: *mut *mut std::ffi::c_void,
        ) -> i32;
    }
    let mut module = std::ptr::null_mut();
    // SAFETY: with FROM_ADDRESS the name is an address inside this module; PIN
    // keeps the module loaded until the process ends; `module` is a valid out pointer.
    unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_PIN | GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
            pin_this_module as *const u16,
            &mut module,
        );
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
fn pin() {}
