//! One client connection of the data server: the request loop that reads pipelined
//! requests and answers each, in order, on the same connection.
//!
//! Input is read in large chunks into one buffer, so that many small pipelined requests
//! cost one read between them; answers are gathered in an output buffer that is sent
//! only when no further complete request is waiting (or before any read that could
//! block), so a burst of requests gets a burst of answers in few writes.
//!
//! The only server module that reads or writes a client socket (`splice.rs` moves
//! body bytes out of it when asked to here).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::body::{BodyError, Decoding};
use super::request::{parse_request_head, Method, RequestHead};
use super::response::{self, write_error, write_full, write_head};
use super::splice::{Moved, Pipe};
use super::status::status_json;
use super::storage::{resolve, Appended, FolderCache, PendingFile, RequestPath, Stored};
use super::{h5, h5r};
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
const SPLICE_BODY_BYTES: u64 = BODY_CHUNK as u64;

/// Why the request loop stops. Either way the connection is closed.
enum End {
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
type Next = Result<(), End>;

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

struct Connection<'a> {
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

impl Connection<'_> {
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
        let path = match resolve(&head.target) {
            Ok(path) => path,
            Err(reason) => return self.refuse(400, &format!("The name is not allowed: {reason}.")),
        };
        match head.method {
            Method::Put if head.content_length.is_none() => {
                self.refuse(411, "A PUT needs a Content-Length.")
            }
            Method::Put => {
                if head.expect_continue {
                    self.output.extend_from_slice(response::CONTINUE);
                }
                self.put(&head, path, body_len)?;
                self.close_if_asked(&head)
            }
            Method::Get | Method::Head => {
                self.skip_body(body_len)?;
                self.get(&head, path)?;
                self.close_if_asked(&head)
            }
            Method::Other => self.refuse(405, "Only GET, HEAD and PUT are served."),
        }
    }

    /// Answers an error and ends the connection (the body, if any, is not read).
    fn refuse(&mut self, code: u16, detail: &str) -> Next {
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

    // ---- PUT -------------------------------------------------------------------

    fn put(&mut self, head: &RequestHead, path: RequestPath, body_len: u64) -> Next {
        if self.shared.config.discard {
            self.skip_body(body_len)?;
            self.output.extend_from_slice(response::OK_EMPTY);
            return Ok(());
        }
        match path {
            RequestPath::Plain {
                relative,
                folder: false,
            } => self.put_file(head, &relative, body_len),
            // PYME's "make this folder"; data sent with it would be lost, so it is refused.
            RequestPath::Plain { folder: true, .. } if body_len > 0 => {
                self.refuse(400, "A folder (a name ending in '/') cannot hold data.")
            }
            RequestPath::Plain {
                relative,
                folder: true,
            } => {
                match self.shared.store.create_folder(&relative) {
                    Ok(()) => self.output.extend_from_slice(response::OK_EMPTY),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.error(405, "A file of that name exists.")
                    }
                    Err(e) => self.storage_error(&e, "The folder could not be made."),
                }
                Ok(())
            }
            RequestPath::AggregateText(relative) if h5r::is_hdf5_name(&relative) => {
                self.skip_body(body_len)?;
                self.error(409, "__aggregate_txt does not append to HDF5 files.");
                Ok(())
            }
            RequestPath::AggregateText(relative) => self.append(head, &relative, body_len),
            RequestPath::AggregateH5r(rest) => {
                let Some(body) = self.read_body_to_memory(head, body_len)? else {
                    return Ok(());
                };
                let answer = h5r::aggregate(&self.shared.store, &rest, &body);
                self.send_answer(&answer, true);
                Ok(())
            }
            RequestPath::AggregateH5(rest) => {
                let Some(body) = self.read_body_to_memory(head, body_len)? else {
                    return Ok(());
                };
                let answer = h5::aggregate(&self.shared.store, &rest, &body);
                self.send_answer(&answer, true);
                Ok(())
            }
            RequestPath::Unsupported => {
                self.skip_body(body_len)?;
                self.error(501, "HDF5 aggregation and pyramids are not supported.");
                Ok(())
            }
            RequestPath::Status => {
                self.skip_body(body_len)?;
                self.error(405, "The status cannot be written.");
                Ok(())
            }
        }
    }

    /// Stores a new file, write-once. A taken name is found when the file is committed
    /// (the move to its name fails), not checked first: that would cost a system call
    /// per file.
    fn put_file(&mut self, head: &RequestHead, relative: &Path, body_len: u64) -> Next {
        let spare = self.take_spare(head, body_len);
        let in_spare = spare.is_some();
        let begun = match spare {
            Some((spare, allocated)) => {
                let folders = &mut self.folders;
                self.shared
                    .store
                    .begin_in_spare(relative, spare, allocated, folders)
            }
            None => self.shared.store.begin_file(relative, &mut self.folders),
        };
        let mut pending = match begun {
            Ok(pending) => pending,
            Err(e) => {
                self.skip_body(body_len)?;
                self.storage_error(&e, "The file could not be created.");
                return Ok(());
            }
        };
        let received = if head.gzip || body_len < SPLICE_BODY_BYTES {
            let limit = self.shared.config.max_body_bytes;
            let mut sink = Decoding::new(pending, head.gzip, limit);
            let written = self.read_body(body_len, &mut sink)?;
            sink.finish(written)
        } else {
            let written = self.splice_body(body_len, &mut pending)?;
            written
                .map(|()| (pending, body_len))
                .map_err(BodyError::Store)
        };
        let stored = received.and_then(|(pending, len)| {
            let stored = pending.commit().map_err(BodyError::Store)?;
            Ok((stored, len))
        });
        match stored {
            Ok((Stored::New, len)) => {
                if let Some(rate) = self.shared.config.store_bytes_per_s {
                    std::thread::sleep(Duration::from_secs_f64(len as f64 / rate.max(1) as f64));
                }
                self.shared.files_stored.fetch_add(1, Ordering::Relaxed);
                if in_spare {
                    self.shared.files_in_spares.fetch_add(1, Ordering::Relaxed);
                }
                self.shared.bytes_stored.fetch_add(len, Ordering::Relaxed);
                self.output.extend_from_slice(response::OK_EMPTY);
            }
            Ok((Stored::AlreadyExists, _)) => {
                self.error(405, "The file exists; files are written once.")
            }
            Err(e) => self.body_error(&e, "The file could not be written."),
        }
        Ok(())
    }

    /// The answer to a body that did not reach storage.
    fn body_error(&mut self, error: &BodyError, store_failed: &str) {
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
    fn storage_error(&mut self, error: &io::Error, otherwise: &str) {
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
    fn server_error(&mut self, error: &io::Error, otherwise: &str) {
        if is_storage_full(error) {
            self.error(507, "The server's storage is full.");
        } else {
            self.error(500, otherwise);
        }
    }

    /// A spare for a large plain body, when the root has spares and one is ready.
    fn take_spare(&self, head: &RequestHead, body_len: u64) -> Option<(File, u64)> {
        if head.gzip {
            return None;
        }
        self.shared.spares.as_ref()?.take(body_len)
    }

    /// Appends the body to a file (`__aggregate_txt`). The body, decoded, goes to a
    /// spool file first (never into memory), and is appended once complete.
    fn append(&mut self, head: &RequestHead, relative: &Path, body_len: u64) -> Next {
        let spool = match self.shared.store.spool() {
            Ok(spool) => spool,
            Err(e) => {
                self.skip_body(body_len)?;
                self.server_error(&e, "The body cannot be received.");
                return Ok(());
            }
        };
        let limit = self.shared.config.max_body_bytes;
        let mut sink = Decoding::new(spool, head.gzip, limit);
        let written = self.read_body(body_len, &mut sink)?;
        let (mut spool, len) = match sink.finish(written) {
            Ok(received) => received,
            Err(e) => {
                self.body_error(&e, "The body cannot be received.");
                return Ok(());
            }
        };
        match self.shared.store.append(relative, &mut spool) {
            Ok(Appended::Done) => {
                self.shared.bytes_stored.fetch_add(len, Ordering::Relaxed);
                self.output.extend_from_slice(response::OK_EMPTY);
            }
            Ok(Appended::WriteOnce) => self.error(
                405,
                "The file was stored write-once; __aggregate_txt appends only to files it made.",
            ),
            Err(e) => self.storage_error(&e, "The file could not be appended to."),
        }
        Ok(())
    }

    /// Reads a whole body into memory, gunzipped if sent so, within the body limit;
    /// None (answered) when it could not be received.
    fn read_body_to_memory(
        &mut self,
        head: &RequestHead,
        body_len: u64,
    ) -> Result<Option<Vec<u8>>, End> {
        let limit = self.shared.config.max_body_bytes;
        let mut sink = Decoding::new(Vec::new(), head.gzip, limit);
        let written = self.read_body(body_len, &mut sink)?;
        match sink.finish(written) {
            Ok((body, _)) => Ok(Some(body)),
            Err(e) => {
                self.body_error(&e, "The body cannot be received.");
                Ok(None)
            }
        }
    }

    /// Sends an operation's answer (`h5r.rs`): errors as error pages.
    fn send_answer(&mut self, answer: &h5r::Answer, with_body: bool) {
        if answer.code >= 400 {
            self.error(answer.code, &String::from_utf8_lossy(&answer.body));
        } else {
            self.answer(answer.code, answer.content_type, &answer.body, with_body);
        }
    }

    // ---- GET -------------------------------------------------------------------

    fn get(&mut self, head: &RequestHead, path: RequestPath) -> Next {
        let with_body = head.method == Method::Get;
        match path {
            RequestPath::Status => {
                let json = status_json(self.shared);
                self.answer(200, "application/json", json.as_bytes(), with_body);
            }
            RequestPath::Plain {
                relative,
                folder: true,
            } => {
                // An .h5 series is listed as a folder (h5.rs).
                if let Some(answer) = h5::get(&self.shared.store, &relative, true) {
                    self.send_answer(&answer, with_body);
                } else {
                    match self.shared.store.list_folder(&relative) {
                        Ok(json) => {
                            self.answer(200, "application/json", json.as_bytes(), with_body)
                        }
                        Err(_) => self.error(404, "No such folder."),
                    }
                }
            }
            RequestPath::Plain {
                relative,
                folder: false,
            } => {
                let query = head.target.split_once('?').map(|(_, q)| q);
                let store = &self.shared.store;
                let answer =
                    h5::get(store, &relative, false).or_else(|| h5r::get(store, &relative, query));
                if let Some(answer) = answer {
                    self.send_answer(&answer, with_body);
                    return Ok(());
                }
                return self.get_file(head, &relative, with_body);
            }
            RequestPath::AggregateText(_)
            | RequestPath::AggregateH5r(_)
            | RequestPath::AggregateH5(_)
            | RequestPath::Unsupported => self.error(404, "Nothing to get here."),
        }
        Ok(())
    }

    fn get_file(&mut self, head: &RequestHead, relative: &Path, with_body: bool) -> Next {
        let full = match self.shared.store.confined(relative) {
            Ok(full) => full,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                self.error(403, "The name leads out of the storage root.");
                return Ok(());
            }
            Err(_) => {
                self.error(404, "No such file.");
                return Ok(());
            }
        };
        let Ok(metadata) = std::fs::metadata(&full) else {
            self.error(404, "No such file.");
            return Ok(());
        };
        if metadata.is_dir() {
            let path = head.target.split(['?', '#']).next().unwrap_or_default();
            let location = format!("Location: {path}/");
            write_head(&mut self.output, 301, None, 0, &[&location], false);
            return Ok(());
        }
        if !metadata.is_file() {
            // A FIFO or a device: opening it could block, or never end.
            self.error(404, "No such file.");
            return Ok(());
        }
        let Ok(file) = File::open(&full) else {
            self.error(404, "The file cannot be read.");
            return Ok(());
        };
        let size = metadata.len();
        let content_type = Some("application/octet-stream");
        write_head(&mut self.output, 200, content_type, size, &[], false);
        if with_body {
            self.send_file(file, size)?;
        }
        Ok(())
    }

    /// Sends exactly `size` bytes of a file after the head already in the output.
    fn send_file(&mut self, file: File, size: u64) -> Next {
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

    fn answer(&mut self, code: u16, content_type: &str, body: &[u8], with_body: bool) {
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
    fn error(&mut self, code: u16, detail: &str) {
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
    fn read_body(&mut self, len: u64, sink: &mut impl Write) -> Result<io::Result<()>, End> {
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
    fn splice_body(&mut self, len: u64, file: &mut PendingFile) -> Result<io::Result<()>, End> {
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

    fn skip_body(&mut self, len: u64) -> Next {
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
