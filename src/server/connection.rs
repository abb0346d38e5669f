//! One client connection of the data server: the request loop that reads pipelined
//! requests and answers each, in order, on the same connection.
//!
//! Input is read in large chunks into one buffer, so that many small pipelined requests
//! cost one read between them; answers are gathered in an output buffer that is sent
//! only when no further complete request is waiting (or before any read that could
//! block), so a burst of requests gets a burst of answers in few writes.
//!
//! Each request goes to the router (`router.rs`), which calls an operation (`ops/`);
//! operations read the body and write answers only through this connection's
//! methods (the section "what operations use"), never the socket itself. The only
//! server module that reads or writes a client socket (`splice.rs` moves body bytes
//! out of it when asked to here). It never grows a branch per operation.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::body::BodyError;
use super::request::{parse_request_head, RequestHead};
use super::response::{self, write_error, write_full, write_head};
use super::router;
use super::splice::{Moved, Pipe};
use super::storage::{FolderCache, PendingFile};
use super::{
    ConnectionState, Shared, PHASE_BODY, PHASE_BUSY, PHASE_HEAD, PHASE_IDLE, PHASE_WRITE,
    PROGRESS_BYTES,
};

/// Room for body bytes beyond the longest head: big bodies are moved this much per read.
const BODY_CHUNK: usize = 256 * 1024;
/// Answers are sent once this much has gathered, even if more requests wait.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Files up to this size are copied into the output buffer; larger ones are streamed.
const INLINE_FILE_BYTES: u64 = 64 * 1024;
/// Large files are sent in pieces of this size (each a `sendfile` on Linux).
const FILE_PIECE_BYTES: u64 = 1 << 20;
/// Plain bodies of this size or more are moved into their file by `splice`.
pub(crate) const SPLICE_BODY_BYTES: u64 = BODY_CHUNK as u64;

/// Why the request loop stops. Either way the connection is closed.
pub(crate) enum End {
    /// The client closed, or the socket failed (or was shut by eviction or shutdown).
    Gone,
    /// A read waited longer than its timeout.
    TimedOut,
    /// The connection must close after the answers already written (refused request,
    /// `Connection: close`).
    Close,
}

impl From<io::Error> for End {
    fn from(error: io::Error) -> End {
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::TimedOut,
            _ => End::Gone,
        }
    }
}

/// What a read waits for, which decides how long it may wait.
#[derive(Clone, Copy)]
enum Wait {
    /// The next request: at most the idle timeout.
    Request,
    /// The rest of a request head: until the head deadline (without one, at most
    /// the read timeout of silence).
    HeadRest,
    /// Body bytes: at most the read timeout of silence.
    Body,
}

/// Whether the connection stays open after an answer.
pub(crate) type Next = Result<(), End>;

/// Serves one connection until the client leaves, a request asks to close, a request is
/// refused, or the server shuts the socket down.
pub(crate) fn serve(stream: TcpStream, shared: &Shared, state: &ConnectionState) {
    let _ = stream.set_nodelay(true);
    let write_timeout = nonzero(shared.config.read_timeout);
    let _ = stream.set_write_timeout(write_timeout);
    let mut connection = Connection {
        input: vec![0; shared.config.max_header_bytes + BODY_CHUNK].into_boxed_slice(),
        start: 0,
        end: 0,
        output: Vec::with_capacity(OUTPUT_HIGH_WATER),
        stream,
        shared,
        state,
        read_timeout: None,
        head_started: None,
        moved_since_progress: 0,
        folders: FolderCache::default(),
        pipe: if shared.config.kernel_copy {
            PipeState::NotMade
        } else {
            PipeState::Unavailable
        },
    };
    if let Err(End::Close) = connection.request_loop() {
        if connection.send_output().is_ok() {
            connection.linger();
        }
    }
}

fn nonzero(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then_some(timeout)
}

/// One connection: the request loop's state, and what operations (`ops/`) use to read
/// a request's body and write its answer.
pub(crate) struct Connection<'a> {
    stream: TcpStream,
    shared: &'a Shared,
    /// What this connection is doing, for the accept thread's eviction policy.
    state: &'a ConnectionState,
    /// Bytes read but not yet used are `input[start..end]`.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// Answers not yet sent.
    output: Vec<u8>,
    /// The socket's read timeout as last set (set only when it changes).
    read_timeout: Option<Duration>,
    /// When the first byte of the request head being received arrived.
    head_started: Option<Instant>,
    /// Body or answer bytes moved since the eviction policy was last told.
    moved_since_progress: u64,
    /// The folder the latest file went to, resolved.
    folders: FolderCache,
    /// For large bodies; made at the first.
    pipe: PipeState,
}

enum PipeState {
    NotMade,
    Ready(Pipe),
    /// `splice` failed once here, or `kernel_copy` is off: the plain path from now on.
    Unavailable,
}

impl<'a> Connection<'a> {
    fn request_loop(&mut self) -> Next {
        let max_head = self.shared.config.max_header_bytes;
        loop {
            match parse_request_head(&self.input[self.start..self.end], max_head) {
                Ok(Some((head, len))) => {
                    self.start += len;
                    self.head_started = None;
                    self.state.enter(PHASE_BUSY);
                    self.handle(head)?;
                    self.state.answered();
                    if self.output.len() >= OUTPUT_HIGH_WATER {
                        self.send_output()?;
                    }
                }
                Ok(None) => {
                    let wait = if self.start == self.end {
                        self.state.enter(PHASE_IDLE);
                        Wait::Request
                    } else {
                        self.head_started.get_or_insert_with(Instant::now);
                        self.state.enter(PHASE_HEAD);
                        Wait::HeadRest
                    };
                    match self.read_more(wait) {
                        Ok(true) => {}
                        Ok(false) => return Err(End::Gone),
                        Err(End::TimedOut) if matches!(wait, Wait::HeadRest) => {
                            let detail = "The request head did not arrive in time.";
                            write_error(&mut self.output, 408, detail, true);
                            return Err(End::Close);
                        }
                        Err(end) => return Err(end),
                    }
                }
                Err(e) => {
                    let detail = match e.status_code() {
                        431 => "The request head is too long.",
                        _ => "The request head is malformed.",
                    };
                    write_error(&mut self.output, e.status_code(), detail, true);
                    return Err(End::Close);
                }
            }
        }
    }

    fn handle(&mut self, head: RequestHead) -> Next {
        if head.transfer_encoding {
            // Chunked bodies are not decoded; PYME clients always send Content-Length.
            return self.refuse(411, "Send the body with a Content-Length.");
        }
        let body_len = head.content_length.unwrap_or(0);
        if body_len > self.shared.config.max_body_bytes {
            return self.refuse(413, "The body is too large.");
        }
        router::dispatch(self, &head, body_len)?;
        self.close_if_asked(&head)
    }

    /// Answers an error and ends the connection (the body, if any, is not read).
    pub(crate) fn refuse(&mut self, code: u16, detail: &str) -> Next {
        write_error(&mut self.output, code, detail, true);
        Err(End::Close)
    }

    fn close_if_asked(&self, head: &RequestHead) -> Next {
        if head.close {
            Err(End::Close)
        } else {
            Ok(())
        }
    }

    // ---- what operations use (see router.rs) --------------------------------

    /// What the connection threads share: the configuration, the store, the counters.
    /// For as long as the connection, not as long as this borrow.
    pub(crate) fn shared(&self) -> &'a Shared {
        self.shared
    }

    /// Answers to be sent, in order; an operation may write a head here
    /// (`response::write_head`) and then send a file (`send_file`).
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// The folder of the latest file this connection stored (see `FolderCache`).
    pub(crate) fn folders(&mut self) -> &mut FolderCache {
        &mut self.folders
    }

    /// Whether PUT bodies are read and dropped (`--discard`).
    pub(crate) fn discards(&self) -> bool {
        self.shared.config.discard
    }

    /// Tells a client waiting with `Expect: 100-continue` to send its body.
    pub(crate) fn continue_body(&mut self) {
        self.output.extend_from_slice(response::CONTINUE);
    }

    /// Answers 200 with no body (a stored PUT).
    pub(crate) fn ok_empty(&mut self) {
        self.output.extend_from_slice(response::OK_EMPTY);
    }

    /// The answer to a body that did not reach storage.
    pub(crate) fn body_error(&mut self, error: &BodyError, store_failed: &str) {
        match error {
            BodyError::Corrupt => self.error(400, "The gzip body is corrupt."),
            BodyError::TooLarge(limit) => self.error(
                413,
                &format!("The body decodes to more than {limit} bytes."),
            ),
            BodyError::Store(e) => self.storage_error(e, store_failed),
        }
    }

    /// The answer to a storage failure: the client's doing (4xx) or the server's
    /// (see [`Connection::server_error`]).
    pub(crate) fn storage_error(&mut self, error: &io::Error, otherwise: &str) {
        if is_taken_by_a_file(error) {
            self.error(409, "A folder of this name is a file here.");
        } else if is_a_folder(error) {
            self.error(409, "This name is a folder here.");
        } else if error.kind() == io::ErrorKind::PermissionDenied {
            self.error(403, "The name leads out of the storage root.");
        } else {
            self.server_error(error, otherwise);
        }
    }

    /// The answer to a failure of the server's own: a full disk (507: the client
    /// sends the file elsewhere at once instead of retrying here), or 500.
    pub(crate) fn server_error(&mut self, error: &io::Error, otherwise: &str) {
        if is_storage_full(error) {
            self.error(507, "The server's storage is full.");
        } else {
            self.error(500, otherwise);
        }
    }

    /// A spare for a large plain body, when the root has spares and one is ready.
    pub(crate) fn take_spare(&self, head: &RequestHead, body_len: u64) -> Option<(File, u64)> {
        if head.gzip {
            return None;
        }
        self.shared.spares.as_ref()?.take(body_len)
    }

    /// Sends exactly `size` bytes of a file after the head already in the output.
    pub(crate) fn send_file(&mut self, file: File, size: u64) -> Next {
        let mut limited = file.take(size);
        let copied = if size <= INLINE_FILE_BYTES {
            limited.read_to_end(&mut self.output)? as u64
        } else {
            self.send_output()?;
            self.state.enter(PHASE_WRITE);
            let mut copied = 0;
            loop {
                // On Linux this copies file to socket inside the kernel; in pieces,
                // so that the progress is seen.
                let mut piece = (&mut limited).take(FILE_PIECE_BYTES);
                let n = io::copy(&mut piece, &mut self.stream)?;
                if n == 0 {
                    break;
                }
                copied += n;
                self.moved(n);
            }
            self.state.enter(PHASE_BUSY);
            copied
        };
        if copied != size {
            // The file shrank under us: the answer cannot be framed any more.
            return Err(End::Gone);
        }
        Ok(())
    }

    // ---- answers ---------------------------------------------------------------

    pub(crate) fn answer(&mut self, code: u16, content_type: &str, body: &[u8], with_body: bool) {
        if with_body {
            write_full(&mut self.output, code, content_type, body, false);
        } else {
            write_head(
                &mut self.output,
                code,
                Some(content_type),
                body.len() as u64,
                &[],
                false,
            );
        }
    }

    /// An error answer after which the connection stays open.
    pub(crate) fn error(&mut self, code: u16, detail: &str) {
        write_error(&mut self.output, code, detail, false);
    }

    /// Sends the gathered answers. Meanwhile the connection counts as writing: a
    /// client that does not read its answers stalls here, and can be evicted.
    fn send_output(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            let previous = self.state.phase();
            self.state.enter(PHASE_WRITE);
            self.stream.write_all(&self.output)?;
            self.state.enter(previous);
            self.output.clear();
        }
        Ok(())
    }

    /// Counts bytes of body or answer moved, and tells the eviction policy each time
    /// another `PROGRESS_BYTES` have moved.
    fn moved(&mut self, bytes: u64) {
        self.moved_since_progress = self.moved_since_progress.saturating_add(bytes);
        if self.moved_since_progress >= PROGRESS_BYTES as u64 {
            self.state.progressed();
            self.moved_since_progress = 0;
        }
    }

    // ---- input -----------------------------------------------------------------

    /// Sends pending answers, then reads more input, waiting as long as `wait` allows
    /// (`End::TimedOut` after that). Returns false at the end of the stream.
    fn read_more(&mut self, wait: Wait) -> Result<bool, End> {
        self.send_output()?;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.input.len() || self.start > self.input.len() / 2 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let config = &self.shared.config;
        let timeout = match wait {
            Wait::Request => nonzero(config.idle_timeout),
            Wait::Body => nonzero(config.read_timeout),
            Wait::HeadRest => match (nonzero(config.head_timeout), self.head_started) {
                (Some(limit), Some(started)) => {
                    let left = limit.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(End::TimedOut);
                    }
                    Some(left)
                }
                // No head deadline: silence is bounded as inside a body.
                _ => nonzero(config.read_timeout),
            },
        };
        self.set_read_timeout(timeout)?;
        if let Wait::Body = wait {
            self.state.enter(PHASE_BODY);
        }
        loop {
            match self.stream.read(&mut self.input[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end += n;
                    if let Wait::Body = wait {
                        self.moved(n as u64);
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(End::from(e)),
            }
        }
    }

    /// Before closing after a refused request, reads and drops what the client still
    /// sends for a moment, so that the close is not a reset that could destroy the
    /// answer before the client reads it. Server shutdown ends this at once.
    fn linger(&mut self) {
        const LINGER_READ: Duration = Duration::from_millis(200);
        const LINGER_TOTAL: Duration = Duration::from_secs(2);
        const LINGER_BYTES: usize = 16 << 20;
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        if self.stream.set_read_timeout(Some(LINGER_READ)).is_err() {
            return;
        }
        let started = std::time::Instant::now();
        let mut drained = 0;
        while drained < LINGER_BYTES && started.elapsed() < LINGER_TOTAL {
            match self.stream.read(&mut self.input) {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    }

    /// Sets the socket's read timeout, with a system call only when it changes.
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if timeout != self.read_timeout {
            self.stream.set_read_timeout(timeout)?;
            self.read_timeout = timeout;
        }
        Ok(())
    }

    /// Moves `len` body bytes into `sink`. A failing sink does not stop the reading (the
    /// body must be consumed to find the next request); its first error is returned
    /// inside `Ok`. A client gone mid-body is `Err`.
    pub(crate) fn read_body(
        &mut self,
        len: u64,
        sink: &mut impl Write,
    ) -> Result<io::Result<()>, End> {
        let mut remaining = len;
        let mut sink_result = Ok(());
        while remaining > 0 {
            if self.start == self.end && !self.read_more(Wait::Body)? {
                return Err(End::Gone);
            }
            let take =
                (self.end - self.start).min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let chunk = &self.input[self.start..self.start + take];
            if sink_result.is_ok() {
                sink_result = sink.write_all(chunk);
            }
            self.start += take;
            remaining -= take as u64;
        }
        self.state.enter(PHASE_BUSY);
        Ok(sink_result)
    }

    /// Like `read_body` into a new file, but what is not yet read is moved from the
    /// socket into the file by `splice` (see `splice.rs`).
    pub(crate) fn splice_body(
        &mut self,
        len: u64,
        file: &mut PendingFile,
    ) -> Result<io::Result<()>, End> {
        let buffered = (self.end - self.start).min(usize::try_from(len).unwrap_or(usize::MAX));
        let mut result = file.write_all(&self.input[self.start..self.start + buffered]);
        self.start += buffered;
        let mut remaining = len - buffered as u64;
        if let PipeState::NotMade = self.pipe {
            self.pipe = Pipe::new().map_or(PipeState::Unavailable, PipeState::Ready);
        }
        let mut spliced = false;
        while remaining > 0 {
            if result.is_err() {
                self.skip_body(remaining)?;
                return Ok(result);
            }
            // As `read_more` does before a read that can block.
            self.send_output()?;
            self.set_read_timeout(nonzero(self.shared.config.read_timeout))?;
            let (PipeState::Ready(pipe), Some(target)) = (&mut self.pipe, file.file()) else {
                return self.read_body(remaining, file);
            };
            self.state.enter(PHASE_BODY);
            match pipe.move_to_file(&self.stream, target, remaining) {
                Moved::Stored(n) => {
                    remaining -= n;
                    self.moved(n);
                    if !spliced {
                        spliced = true;
                        self.shared.bodies_spliced.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Moved::Refused(n, error) => {
                    remaining -= n;
                    result = Err(error);
                    // With what the file did not take.
                    self.pipe = PipeState::NotMade;
                }
                Moved::Gone => return Err(End::Gone),
                Moved::Unsupported => self.pipe = PipeState::Unavailable,
            }
        }
        self.state.enter(PHASE_BUSY);
        Ok(result)
    }

    pub(crate) fn skip_body(&mut self, len: u64) -> Next {
        // io::sink never fails.
        let _ = self.read_body(len, &mut io::sink())?;
        Ok(())
    }
}

/// The file system (or the user's quota) has no room left for the file.
fn is_storage_full(error: &io::Error) -> bool {
    // By number, as the other checks here.
    #[cfg(unix)]
    let full = [libc::ENOSPC, libc::EDQUOT];
    // ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED.
    #[cfg(windows)]
    let full = [112, 39, 1295];
    #[cfg(not(any(unix, windows)))]
    let full: [i32; 0] = [];
    error
        .raw_os_error()
        .is_some_and(|code| full.contains(&code))
}

/// A folder the name needs is a file already (`a` stored, then `a/b` sent): the
/// client's doing, not the server's failure, and no retry can help.
fn is_taken_by_a_file(error: &io::Error) -> bool {
    // ErrorKind::NotADirectory is newer than the crate's MSRV.
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::ENOTDIR) {
        return true;
    }
    error.kind() == io::ErrorKind::AlreadyExists
}

/// The name is a folder, and a file was expected.
#[cfg_attr(not(unix), allow(unused_variables))]
fn is_a_folder(error: &io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(libc::EISDIR);
    #[cfg(not(unix))]
    false
}
