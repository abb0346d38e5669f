//! Files whose pages are allocated before the bodies that fill them arrive: "spares",
//! kept for a root on a tmpfs with 4 KiB pages only (Linux; `/dev/shm` by default).
//!
//! On a tmpfs, storing a large file costs more in allocating its pages than in copying
//! its bytes: here, of 4.8 ms to write 8 MiB into a new file, `fallocate` alone takes
//! 3.0 ms and the copy into allocated pages 1.9 ms (docs/PERFORMANCE.md). A spare is
//! an unnamed file (`O_TMPFILE`) in the root that a background thread has given pages
//! with `fallocate`. A connection receiving a large body takes one, only copies into
//! it, and publishes it under its name with `linkat`, which fails if the name is
//! taken, as the usual rename does. The allocation then runs on another core while the
//! connection copies, instead of before each copy.
//!
//! Not on a tmpfs with huge pages: there allocating is cheap already, and receiving
//! into pre-allocated huge pages with `splice` cost the server 3.1-3.7 CPU s/GB against
//! 0.40-0.46 without spares (cause not found; measured in docs/PERFORMANCE.md).
//!
//! Nothing waits for a spare: a connection that finds none ready stores the usual way.
//! Spares are never named, so a crash leaves none behind. They hold memory: at most
//! [`SPARES`] files the size of the latest large body (and, until the thread closes
//! them, those that no longer fit), and only while the file system keeps an eighth of
//! its size free besides.

#[cfg(target_os = "linux")]
pub(crate) use linux::Spares;

/// Bodies at least this large take a spare.
pub const SPARE_MIN_BYTES: u64 = 1 << 20;

/// How many spares are kept ready.
pub const SPARES: usize = 2;

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

    use super::{SPARES, SPARE_MIN_BYTES};
    use crate::server::fs::{link_unnamed, unnamed_file, TEMP_PREFIX};
    use crate::server::mounts::small_pages_tmpfs;
    use crate::server::system::disk_usage;

    /// The spares of one root, and what their thread needs to know.
    pub(crate) struct Spares {
        root: PathBuf,
        state: Mutex<State>,
        /// Wakes the thread: a spare taken, the wanted size changed, or stop.
        wake: Condvar,
    }

    struct State {
        /// Ready spares and their allocated size.
        ready: Vec<(File, u64)>,
        /// Spares that no longer fit the bodies coming, for the thread to close: a
        /// close frees the pages, which should not cost a connection.
        stale: Vec<File>,
        /// The size of the latest large body; 0 until one came.
        size: u64,
        /// Set when making a spare failed, cleared by the next take: no retrying in
        /// a loop on a full file system.
        failed: bool,
        stopping: bool,
    }

    impl Spares {
        /// Spares for `root` when it is on a tmpfs with 4 KiB pages only, where an
        /// unnamed file can be made and named.
        pub fn for_root(root: &Path) -> Option<Spares> {
            small_pages_tmpfs(root)?;
            if !can_publish(root) {
                return None;
            }
            Some(Spares {
                root: root.to_owned(),
                state: Mutex::new(State {
                    ready: Vec::new(),
                    stale: Vec::new(),
                    size: 0,
                    failed: false,
                    stopping: false,
                }),
                wake: Condvar::new(),
            })
        }

        /// A spare for a body of `len` bytes, if one is ready; remembers `len` as the
        /// size of the next spares.
        ///
        /// A spare fits a body from half to twice its size: a larger one is cut at
        /// commit, a smaller one leaves the rest of the body to allocate the usual
        /// way. Either costs less than no spare, and frames compressed to varying
        /// sizes (PZF) still find one. Spares that no longer fit go to the thread.
        pub fn take(&self, len: u64) -> Option<(File, u64)> {
            if len < SPARE_MIN_BYTES {
                return None;
            }
            let mut state = self.lock();
            state.size = len;
            state.failed = false;
            let (fitting, stale): (Vec<_>, Vec<_>) = std::mem::take(&mut state.ready)
                .into_iter()
                .partition(|(_, allocated)| fits(*allocated, len));
            state.ready = fitting;
            state.stale.extend(stale.into_iter().map(|(file, _)| file));
            let closest = (0..state.ready.len()).min_by_key(|&i| state.ready[i].1.abs_diff(len));
            let taken = closest.map(|i| state.ready.swap_remove(i));
            self.wake.notify_one();
            taken
        }

        /// How many spares are ready (for `/__status`).
        pub fn ready(&self) -> usize {
            self.lock().ready.len()
        }

        /// The thread's work: keeps [`SPARES`] spares ready until [`Spares::stop`],
        /// and closes the stale ones.
        pub fn run(&self) {
            let mut state = self.lock();
            loop {
                while !state.stopping
                    && state.stale.is_empty()
                    && (state.size == 0 || state.failed || state.ready.len() >= SPARES)
                {
                    state = self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if state.stopping {
                    return;
                }
                if !state.stale.is_empty() {
                    let stale = std::mem::take(&mut state.stale);
                    drop(state);
                    drop(stale);
                    state = self.lock();
                    continue;
                }
                let size = state.size;
                drop(state);
                let made = self.make(size);
                state = self.lock();
                match made {
                    Ok(file) if state.size == size && !state.stopping => {
                        state.ready.push((file, size))
                    }
                    Ok(_) => {}
                    Err(_) => state.failed = true,
                }
            }
        }

        /// Ends [`Spares::run`] and frees the ready spares.
        pub fn stop(&self) {
            let mut state = self.lock();
            state.stopping = true;
            state.ready.clear();
            state.stale.clear();
            self.wake.notify_all();
        }

        /// An unnamed file with `size` bytes allocated, unless that would leave less
        /// than an eighth of the file system free.
        fn make(&self, size: u64) -> io::Result<File> {
            let disk = disk_usage(&self.root).ok_or_else(|| io::Error::other("statvfs failed"))?;
            if disk.free < size.saturating_add(disk.total / 8) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let file = unnamed_file(&self.root)?;
            let len = libc::off_t::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
            // SAFETY: a plain call on a descriptor we own.
            if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(file)
        }

        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Whether a spare of `allocated` bytes is worth using for a body of `len`.
    fn fits(allocated: u64, len: u64) -> bool {
        allocated >= len / 2 && allocated <= len.saturating_mul(2)
    }

    /// Whether an unnamed file can be made in `root` and given a name there: it needs
    /// `O_TMPFILE` and `/proc/self/fd`.
    fn can_publish(root: &Path) -> bool {
        let probe = root.join(format!("{TEMP_PREFIX}{}-probe", std::process::id()));
        let linked = unnamed_file(root).and_then(|file| link_unnamed(&file, &probe));
        let _ = std::fs::remove_file(&probe);
        linked.is_ok()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Spares, SPARE_MIN_BYTES};

    /// The thread makes spares of the size last asked for, a take hands one over
    /// with that many bytes allocated, a spare less than half a body's size is not
    /// handed over, and stop ends the thread.
    #[test]
    fn spares_are_made_ahead_and_handed_over() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("skipped: no /dev/shm");
            return;
        };
        let Some(spares) = Spares::for_root(dir.path()) else {
            eprintln!("skipped: /dev/shm is not a tmpfs with O_TMPFILE here");
            return;
        };
        let len = 3 * SPARE_MIN_BYTES + 7;
        assert!(
            spares.take(SPARE_MIN_BYTES - 1).is_none(),
            "small bodies take none"
        );
        std::thread::scope(|scope| {
            let thread = scope.spawn(|| spares.run());
            assert!(
                spares.take(len).is_none(),
                "none before a large body was seen"
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            let (file, allocated) = loop {
                if let Some(taken) = spares.take(len) {
                    break taken;
                }
                assert!(Instant::now() < deadline, "no spare made");
                std::thread::sleep(Duration::from_millis(5));
            };
            assert_eq!(allocated, len);
            assert_eq!(file.metadata().unwrap().len(), len);
            // Three times larger: the spare on hand does not fit (it goes stale),
            // then spares of the new size come.
            assert!(spares.take(3 * len).is_none(), "a spare a third the size");
            let (_, allocated) = loop {
                if let Some(taken) = spares.take(3 * len) {
                    break taken;
                }
                assert!(Instant::now() < deadline, "no spare of the new size");
                std::thread::sleep(Duration::from_millis(5));
            };
            assert_eq!(allocated, 3 * len);
            spares.stop();
            thread.join().unwrap();
        });
        assert!(spares.take(len).is_none(), "stopped spares are gone");
        // Unnamed: the folder stays empty.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

/// Elsewhere there are no spares: never made, so every file is stored the usual way.
#[cfg(not(target_os = "linux"))]
pub(crate) struct Spares;

#[cfg(not(target_os = "linux"))]
impl Spares {
    pub fn for_root(_root: &std::path::Path) -> Option<Spares> {
        None
    }

    pub fn take(&self, _len: u64) -> Option<(std::fs::File, u64)> {
        None
    }

    pub fn ready(&self) -> usize {
        0
    }

    pub fn run(&self) {}

    pub fn stop(&self) {}
}
