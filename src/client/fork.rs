//! Knowing, without a system call, that this process is a child forked while a
//! streamer was open.
//!
//! `fork(2)` copies the memory of every streamer into the child, but none of
//! its threads: the child holds handles whose queues no thread will ever
//! send, whose locks a vanished thread may hold, and whose sockets are the
//! parent's. A `pthread_atfork` child handler (registered the first time a
//! streamer is made) adds one to a process-wide generation; each streamer
//! records the generation it was born in (`Born`), and its public calls
//! compare the two: one atomic load, no system call per put. The child handler
//! also closes the child's copies of the spill folders' lock files, so that a
//! child never keeps a parent's folder locked (see `folder_lock`). Taking or
//! releasing such a lock runs inside `atomic_with_fork`: the same handlers
//! hold a mutex across `fork(2)` (taken in the prepare handler, released in
//! the parent's and the child's), so a fork happens before a lock's set-up
//! (open, lock, registration) or after it, never between its steps; a child
//! forked in between would keep a copy of an unregistered descriptor and with
//! it the parent's lock, after the parent released it. (Every descriptor the
//! client opens is `O_CLOEXEC`, as std opens them, so `exec` drops them too.)
//!
//! In scope: the generation, the handler, the descriptors it closes.
//! Out of scope: what a streamer does once it knows (see `streamer`: it
//! refuses every call with [`crate::Error::Forked`] and frees only memory).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// How many fork()s this process's ancestors and itself made after the first
/// streamer was created: 0 in the process that made it.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Lock-file descriptors the child handler closes (-1: a free slot). A fixed
/// array, because the handler runs in the child where only async-signal-safe
/// work is allowed (no allocation, no lock another thread might have held).
const SLOTS: usize = 256;
static CLOSE_IN_CHILD: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];

/// The generation a handle was born in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Born(u64);

impl Born {
    /// Now (and registers the child handler, once per process).
    pub fn now() -> Born {
        register_handler();
        Born(GENERATION.load(Ordering::SeqCst))
    }

    /// Whether this is a child forked after the handle was born.
    pub fn forked(&self) -> bool {
        GENERATION.load(Ordering::Relaxed) != self.0
    }
}

/// The current generation, as `Born::now` records it (for wrappers that
/// keep their own threads, as the Python package does).
pub fn generation() -> u64 {
    Born::now().0
}

#[cfg(unix)]
fn register_handler() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers handlers that only touch atomics, close(2) and the
        // set-up mutex, as fork handlers may.
        let result =
            unsafe { libc::pthread_atfork(Some(before_fork), Some(in_parent), Some(in_child)) };
        debug_assert_eq!(result, 0, "pthread_atfork failed");
    });
}

#[cfg(not(unix))]
fn register_handler() {}

/// The mutex that keeps a fork out of a lock's set-up (a pthread mutex: the
/// handlers lock it in one function and unlock it in another).
#[cfg(unix)]
struct SetupMutex(std::cell::UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: only used through pthread_mutex_lock / unlock, made for sharing.
#[cfg(unix)]
unsafe impl Sync for SetupMutex {}

#[cfg(unix)]
static SETUP: SetupMutex = SetupMutex(std::cell::UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));

#[cfg(unix)]
fn lock_setup() {
    // SAFETY: a statically initialised mutex, never moved.
    unsafe { libc::pthread_mutex_lock(SETUP.0.get()) };
}

#[cfg(unix)]
fn unlock_setup() {
    // SAFETY: locked by this thread (or, in a child, by the thread that forked).
    unsafe { libc::pthread_mutex_unlock(SETUP.0.get()) };
}

/// Runs `setup` (taking or releasing a folder lock, registering its
/// descriptor) with no fork in the middle: a fork waits until it is done.
/// `setup` may not fork.
pub(crate) fn atomic_with_fork<T>(setup: impl FnOnce() -> T) -> T {
    register_handler();
    #[cfg(unix)]
    let _held = SetupHeld::take();
    setup()
}

/// The set-up mutex, held until dropped (also when the set-up panics).
#[cfg(unix)]
struct SetupHeld;

#[cfg(unix)]
impl SetupHeld {
    fn take() -> SetupHeld {
        lock_setup();
        SetupHeld
    }
}

#[cfg(unix)]
impl Drop for SetupHeld {
    fn drop(&mut self) {
        unlock_setup();
    }
}

#[cfg(unix)]
extern "C" fn before_fork() {
    lock_setup();
}

#[cfg(unix)]
extern "C" fn in_parent() {
    unlock_setup();
}

#[cfg(unix)]
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    for slot in &CLOSE_IN_CHILD {
        let fd = slot.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: the descriptor was registered by a lock that does not
            // close it itself in a forked child (it checks its `Born`).
            unsafe { libc::close(fd) };
        }
    }
    unlock_setup();
}

/// Asks the child handler to close `fd` in every child forked from now on.
/// `None` when every slot is taken (more than 256 folders locked at once):
/// such a child then keeps the lock until it exits or execs.
#[cfg(unix)]
pub(crate) fn close_in_child(fd: i32) -> Option<usize> {
    (0..SLOTS).find(|&slot| {
        CLOSE_IN_CHILD[slot]
            .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// The descriptor of `slot` is being closed by its owner: forget it.
pub(crate) fn forget_slot(slot: usize) {
    CLOSE_IN_CHILD[slot].store(-1, Ordering::SeqCst);
}
