//! Moves a large request body from the socket into its file inside the kernel (Linux
//! `splice(2)` through a pipe), without copying it through user space: the socket's
//! pages go into the pipe by reference, and only the move from the pipe into the file
//! copies. It halves the copies per stored byte; on tmpfs it cut the receiver's CPU
//! per GB by 15-25 % (docs/PERFORMANCE.md, "Storing: `splice`").
//!
//! Other systems, and sockets or files that refuse `splice`, use the plain path:
//! read into the connection's buffer, then write.

use std::io;

/// How a body's bytes went.
// Elsewhere than Linux only `Unsupported` is ever made.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum Moved {
    /// This many bytes went from the socket into the file (at least one).
    Stored(u64),
    /// This many bytes were taken from the socket but the file refused them: the
    /// error, for the answer. The bytes are gone from the socket, as they must be for
    /// the next request to be read, but some may be left in the pipe: it must be
    /// dropped.
    Refused(u64, io::Error),
    /// The client closed or went silent past the socket's read timeout.
    Gone,
    /// `splice` does not work here; no byte was taken.
    Unsupported,
}

#[cfg(target_os = "linux")]
pub(crate) use linux::Pipe;

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io::{self, Read, Write};
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::Moved;

    /// The pipe's size asked for: a splice call moves at most this much. The
    /// kernel keeps its default (64 KiB) when the user's pipe allowance is spent.
    const PIPE_BYTES: usize = 1 << 20;

    /// The pipe through which one connection moves bodies. It is empty between calls.
    pub(crate) struct Pipe {
        read: File,
        write: File,
        capacity: usize,
        /// Set when the target file system refused a `splice` write.
        plain_only: bool,
    }

    impl Pipe {
        pub fn new() -> io::Result<Pipe> {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for the two descriptors.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: both descriptors are new and owned by nothing else.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: a plain fcntl on a descriptor we own.
            let size = unsafe {
                libc::fcntl(
                    write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    PIPE_BYTES as libc::c_int,
                )
            };
            let capacity = if size > 0 { size as usize } else { 64 * 1024 };
            Ok(Pipe {
                read: read.into(),
                write: write.into(),
                capacity,
                plain_only: false,
            })
        }

        /// Moves up to `len` bytes (at least one) from `socket` into `file` at its
        /// current offset. Blocks like a read of the socket.
        pub fn move_to_file(&mut self, socket: &TcpStream, file: &File, len: u64) -> Moved {
            if self.plain_only {
                return Moved::Unsupported;
            }
            let want = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(self.capacity);
            let taken = loop {
                match splice(socket.as_raw_fd(), self.write.as_raw_fd(), want) {
                    Ok(0) => return Moved::Gone,
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if unsupported(&e) => return Moved::Unsupported,
                    // EAGAIN after the read timeout, a reset, a shut-down socket.
                    Err(_) => return Moved::Gone,
                }
            };
            let mut in_pipe = taken;
            while in_pipe > 0 {
                match splice(self.read.as_raw_fd(), file.as_raw_fd(), in_pipe) {
                    Ok(0) => return Moved::Refused(taken as u64, io::ErrorKind::WriteZero.into()),
                    Ok(n) => in_pipe -= n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if in_pipe == taken && unsupported(&e) => {
                        // A file system without `splice` writes: these bytes the
                        // plain way, and no more splicing on this connection.
                        self.plain_only = true;
                        return match self.copy_plainly(file, in_pipe) {
                            Ok(()) => Moved::Stored(taken as u64),
                            Err(e) => Moved::Refused(taken as u64, e),
                        };
                    }
                    Err(e) => return Moved::Refused(taken as u64, e),
                }
            }
            Moved::Stored(taken as u64)
        }

        /// Reads `len` bytes out of the pipe and writes them to `file`.
        fn copy_plainly(&mut self, mut file: &File, mut len: usize) -> io::Result<()> {
            let mut scratch = vec![0u8; len.min(self.capacity)];
            while len > 0 {
                let want = len.min(scratch.len());
                let n = self.read.read(&mut scratch[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                file.write_all(&scratch[..n])?;
                len -= n;
            }
            Ok(())
        }
    }

    fn unsupported(error: &io::Error) -> bool {
        matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
    }

    fn splice(from: libc::c_int, to: libc::c_int, len: usize) -> io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (both ends use their own).
        let moved = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if moved < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(moved as usize)
        }
    }

    #[cfg(test)]
    mod tests {
        use std::io::{Read, Seek, Write};

        use super::Pipe;

        /// The fallback for file systems that refuse `splice` writes: what is in the
        /// pipe reaches the file exactly.
        #[test]
        fn bytes_in_the_pipe_are_copied_plainly() {
            let mut pipe = Pipe::new().unwrap();
            assert!(pipe.capacity >= 64 * 1024);
            let bytes: Vec<u8> = (0..50_000).map(|i| (i % 241) as u8).collect();
            pipe.write.write_all(&bytes).unwrap();
            let mut file = tempfile::tempfile().unwrap();
            pipe.copy_plainly(&file, bytes.len()).unwrap();
            file.rewind().unwrap();
            let mut stored = Vec::new();
            file.read_to_end(&mut stored).unwrap();
            assert!(stored == bytes);
        }
    }
}

/// Where `splice` does not exist: never made, so the plain path is always taken.
#[cfg(not(target_os = "linux"))]
pub(crate) struct Pipe;

#[cfg(not(target_os = "linux"))]
impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub fn move_to_file(
        &mut self,
        _socket: &std::net::TcpStream,
        _file: &std::fs::File,
        _len: u64,
    ) -> Moved {
        Moved::Unsupported
    }
}
