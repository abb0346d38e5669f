//! The streamer's memory: its budget, and the buffers a copying `put` copies
//! large files into.
//!
//! **The budget** ([`crate::StreamerOptions::memory_limit`]) bounds every byte
//! the streamer holds for files, whatever the number of servers: a file
//! reserves its size before it is copied or queued ([`BufferPool::reserve`]),
//! and the [`Reservation`] travels with the file: inside a pooled copy's
//! buffer (back when its last clone is dropped), else in the file's `Job`
//! (back when the job is dropped). Either way it comes back on every
//! outcome, after failover moved the file, or after it was spilled. Free buffers of the
//! pool count in the budget too: a file that needs their room frees them
//! (the pool shrinks), so reserved bytes plus free buffers never pass the
//! limit. One exception keeps a file larger than the budget from waiting for
//! ever: it is taken when nothing else is reserved, alone.
//!
//! **The pool** recycles copy buffers, so a steady stream of camera frames
//! allocates (and page-faults) nothing: a buffer goes back to the pool when
//! its file has its outcome. The pool keeps at most the streamer's total
//! queue byte limit (and the budget) in free buffers.
//!
//! A large buffer (2 MiB or more) is made for the one copy a `put` makes of a
//! camera frame, which is most of the time that `put` takes:
//! - it starts on a 2 MiB boundary and, on Linux, asks for transparent huge
//!   pages: fewer TLB misses, and in a VM each miss walks two page tables; a
//!   new buffer is also faulted in with 4 faults instead of 2048;
//! - on x86-64 a large file is copied with non-temporal (streaming) stores,
//!   which write to memory without first reading each destination cache line
//!   in, and leave the caches to the caller. glibc's `memcpy` does the same
//!   only above a threshold derived from the cache size, which VMs often
//!   report far too large (192 MiB on the test machine).
//!
//! The first fill of a new buffer is slow (the kernel, and in a VM the host,
//! must back every page; measured in docs/PERFORMANCE.md, "the copying put").
//! So a streamer's pool keeps one spare
//! large buffer ready: when a `put` takes the last free one, a helper thread
//! (`pyme-spare-buffer`) makes and writes the next, within the byte limit and
//! the budget. A spare never makes a put wait or fail: a file that needs
//! its room takes it, and the spare is freed once made (until then the
//! budget is passed by that one buffer).
//! [`BufferPool::prepare`] (`Streamer::prepare_buffers`) does the same ahead
//! of time, for as many buffers as the caller asks.
//!
//! Out of scope: which file waits for room and how long (the caller of
//! `reserve` says: `cluster` for puts, `session` for filter output).
//!
//! Measurements: "The put copy: huge pages and streaming stores" in
//! docs/PERFORMANCE.md.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;

use super::options::{InterruptCheck, INTERRUPT_CHECK_INTERVAL};

/// Files smaller than this are copied into a plain allocation: the allocator
/// is as fast as the pool for them.
const SMALLEST_POOLED: usize = 64 * 1024;

/// The size of a transparent huge page on x86-64 and (with 4 KiB base pages)
/// aarch64; also the smallest file copied with streaming stores.
const HUGE_PAGE: usize = 2 * 1024 * 1024;

pub(crate) struct BufferPool {
    free: Mutex<Free>,
    /// The most bytes kept in free buffers.
    max_bytes: u64,
    /// The memory budget: bytes reserved plus free buffers stay within it
    /// (see the module comment for the one exception).
    limit: u64,
    /// Whether a spare large buffer is kept ready (see the module comment).
    keeps_a_spare: bool,
    /// Wakes the spare-buffer thread.
    spare_wanted: Condvar,
    /// Signalled when reserved bytes come back (only when someone waits) and
    /// when waiting must end: threads in [`BufferPool::reserve`] wait on it.
    room: Condvar,
    spare_thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Free {
    buffers: Vec<Buffer>,
    bytes: u64,
    /// Bytes in every buffer of the pool, free or holding a file.
    allocated: u64,
    /// Bytes reserved in the budget: files (a pooled buffer's whole
    /// capacity), filter output, buffers being prepared.
    reserved: u64,
    /// The spare buffer being made, in bytes (0: none). A file that needs
    /// its room does not wait for it: the spare is freed once made.
    making: u64,
    /// The spare being made is to be freed, not kept.
    drop_spare: bool,
    /// Threads waiting in `reserve` or `reserve_output`.
    waiting: usize,
    /// A sender's filter output holds room beyond the budget (see
    /// [`BufferPool::reserve_output`]).
    overdraft: bool,
    /// The length of the spare buffer wanted, if one is.
    spare: Option<usize>,
    stopped: bool,
}

/// How long [`BufferPool::reserve`] may wait for room.
pub(crate) struct RoomWait<'a> {
    /// `None`: as long as it takes; a past instant: not at all.
    pub deadline: Option<Instant>,
    /// Asked every [`INTERRUPT_CHECK_INTERVAL`] of waiting, with no lock held.
    pub interrupt: Option<&'a InterruptCheck>,
    /// Asked at every wake-up: `false` ends the wait (the streamer closes).
    pub open: &'a dyn Fn() -> bool,
    /// `Some(n)`: room only while everything reserved, this included, stays
    /// within 1/n of the budget (files read back from the spill folder leave
    /// the rest to new puts); alone, any size is still taken.
    pub share: Option<u64>,
}

/// Why [`BufferPool::reserve`] gave up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Shortfall {
    /// Still no room at the deadline: `held` bytes were reserved.
    Full { held: u64 },
    /// `RoomWait::open` said no.
    Closed,
    /// The interrupt check said so.
    Interrupted,
}

/// Bytes held in the budget, given back when this is dropped. It travels
/// with the file's bytes ([`Reservation::hold`]), so failover, spilling and
/// every outcome give the room back by dropping them.
pub(crate) struct Reservation {
    bytes: u64,
    pool: Arc<BufferPool>,
}

/// The room of a filter's output (see [`BufferPool::reserve_output`]).
pub(crate) struct OutputRoom {
    room: Reservation,
    /// This is the one overdraft.
    overdraft: bool,
}

impl OutputRoom {
    /// Holds `more` bytes besides, without waiting: output that exists
    /// already, beyond what was reserved for it.
    pub fn grow(&mut self, more: u64) {
        self.room.pool.lock().reserved += more;
        self.room.bytes += more;
    }
}

impl Drop for OutputRoom {
    fn drop(&mut self) {
        if self.overdraft {
            let bytes = std::mem::take(&mut self.room.bytes);
            let mut free = self.room.pool.lock();
            free.overdraft = false;
            // Whoever waits for room may take the overdraft now.
            self.room.pool.unreserve(free, bytes);
        }
    }
}

impl Reservation {
    /// `data`, carrying this reservation until its last clone is dropped.
    #[cfg(test)]
    pub fn hold(self, data: Bytes) -> Bytes {
        if data.is_empty() {
            return data;
        }
        Bytes::from_owner(Held {
            data,
            _reservation: self,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        if bytes > 0 {
            let free = self.pool.lock();
            self.pool.unreserve(free, bytes);
        }
    }
}

/// Bytes given to the streamer, with the room they hold in the budget.
#[cfg(test)]
struct Held {
    data: Bytes,
    _reservation: Reservation,
}

#[cfg(test)]
impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl BufferPool {
    /// A pool of at most `max_bytes` of free buffers, inside a budget of
    /// `limit` bytes; with `keep_a_spare`, it keeps a spare large buffer
    /// ready (see the module comment), and [`Self::stop`] ends the thread
    /// that makes it.
    pub fn new(max_bytes: u64, limit: u64, keep_a_spare: bool) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Free::default()),
            max_bytes: max_bytes.min(limit),
            limit,
            keeps_a_spare: keep_a_spare,
            spare_wanted: Condvar::new(),
            room: Condvar::new(),
            spare_thread: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved in the budget now (files, filter output, buffers being made).
    pub fn reserved(&self) -> u64 {
        self.lock().reserved
    }

    /// Threads waiting for room now.
    #[cfg(test)]
    pub fn waiters(&self) -> usize {
        self.lock().waiting
    }

    /// Bytes in free buffers now.
    pub fn free_bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Reserves `bytes` in the budget, waiting for room as `wait` allows.
    /// Free buffers give way to it (the pool shrinks). When nothing else is
    /// reserved, any size is taken: a file larger than the budget goes alone.
    pub fn reserve(
        self: &Arc<Self>,
        bytes: u64,
        wait: &RoomWait<'_>,
    ) -> Result<Reservation, Shortfall> {
        let mut free = self.lock();
        // Set when a wait begins: a reserve that finds room reads no clock.
        let mut next_check: Option<Instant> = None;
        loop {
            if !(wait.open)() {
                return Err(Shortfall::Closed);
            }
            let within_share = wait.share.is_none_or(|share| {
                free.reserved == 0 || free.reserved.saturating_add(bytes) <= self.limit / share
            });
            let (room, unused) = match within_share {
                true => self.make_room(&mut free, bytes),
                false => (false, Vec::new()),
            };
            if room {
                free.reserved += bytes;
                drop(free);
                drop(unused);
                return Ok(Reservation {
                    bytes,
                    pool: Arc::clone(self),
                });
            }
            let now = Instant::now();
            if wait.deadline.is_some_and(|deadline| now >= deadline) {
                return Err(Shortfall::Full {
                    held: free.reserved,
                });
            }
            let check_at = wait
                .interrupt
                .map(|_| *next_check.get_or_insert(now + INTERRUPT_CHECK_INTERVAL));
            let wake = [wait.deadline, check_at].into_iter().flatten().min();
            free.waiting += 1;
            free = match wake {
                None => self.room.wait(free).unwrap_or_else(|e| e.into_inner()),
                Some(wake) => {
                    self.room
                        .wait_timeout(free, wake.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            free.waiting -= 1;
            if let (Some(check), Some(check_at)) = (wait.interrupt, check_at) {
                if Instant::now() >= check_at {
                    // Without the lock: the check may wait for a host's own
                    // lock (Python's GIL).
                    drop(free);
                    if check() {
                        return Err(Shortfall::Interrupted);
                    }
                    next_check = Some(Instant::now() + INTERRUPT_CHECK_INTERVAL);
                    free = self.lock();
                }
            }
        }
    }

    /// Room for a filter's output of about `bytes`, for a sender thread. It
    /// waits for room, except that one sender at a time may go beyond the
    /// budget (the overdraft): senders waiting on each other while queued
    /// files fill the budget would stop the streamer for good, and the one
    /// that goes on frees its room once its output is written. So filter
    /// output passes the budget by one file's output at most (and by what a
    /// filter writes beyond the size of its input, counted once written).
    pub fn reserve_output(self: &Arc<Self>, bytes: u64) -> OutputRoom {
        let mut free = self.lock();
        loop {
            let (room, unused) = self.make_room(&mut free, bytes);
            let overdraft = !room && !free.overdraft;
            if room || overdraft {
                free.reserved += bytes;
                free.overdraft |= overdraft;
                drop(free);
                drop(unused);
                let room = Reservation {
                    bytes,
                    pool: Arc::clone(self),
                };
                return OutputRoom { room, overdraft };
            }
            free.waiting += 1;
            free = self.room.wait(free).unwrap_or_else(|e| e.into_inner());
            free.waiting -= 1;
        }
    }

    /// Whether `bytes` more may be reserved now; if so, free buffers (oldest
    /// first) are taken out of the pool until they fit beside them, and
    /// handed back to be freed outside the lock.
    fn make_room(&self, free: &mut Free, bytes: u64) -> (bool, Vec<Buffer>) {
        let alone = free.reserved == 0;
        if !alone && free.reserved.saturating_add(bytes) > self.limit {
            return (false, Vec::new());
        }
        let mut unused = Vec::new();
        let beside = |free: &Free| {
            free.reserved
                .saturating_add(free.bytes)
                .saturating_add(free.making)
                .saturating_add(bytes)
        };
        while beside(free) > self.limit && !free.buffers.is_empty() {
            let buffer = free.buffers.remove(0);
            free.bytes -= buffer.capacity() as u64;
            free.allocated -= buffer.capacity() as u64;
            unused.push(buffer);
        }
        if beside(free) > self.limit && free.making > 0 {
            free.drop_spare = true;
        }
        (true, unused)
    }

    /// Gives `bytes` back to the budget and wakes whoever waits for room.
    fn unreserve(&self, mut free: MutexGuard<'_, Free>, bytes: u64) {
        free.reserved -= bytes;
        let anyone_waiting = free.waiting > 0;
        drop(free);
        // Skipped when nobody waits: it is a system call per file otherwise.
        if anyone_waiting {
            self.room.notify_all();
        }
    }

    /// Ends every wait in `reserve` that should end (its `open` is asked again).
    pub fn wake_waiters(&self) {
        let _free = self.lock();
        self.room.notify_all();
    }

    /// A copy of `data` in a recycled buffer, which holds `reservation` (made
    /// for `data.len()` bytes) until the copy is dropped. A small file is
    /// copied into a plain allocation, and its reservation comes back, for
    /// the file to hold (see `Job::room`): wrapping it into the `Bytes` would
    /// cost one more allocation per put.
    pub fn copy(
        self: &Arc<Self>,
        data: &[u8],
        mut reservation: Reservation,
    ) -> (Bytes, Option<Reservation>) {
        if data.len() < SMALLEST_POOLED {
            return (Bytes::copy_from_slice(data), Some(reservation));
        }
        let mut buffer = self.take(data.len(), &mut reservation);
        buffer.fill(data);
        let copy = Bytes::from_owner(Pooled {
            buffer,
            reservation,
        });
        (copy, None)
    }

    /// Puts up to `count` new buffers for files of `len` bytes into the pool,
    /// each written once so that its pages are faulted in now and not by a
    /// `put` (see the module doc). Stops where the pool would exceed its byte
    /// limit or the budget; files below [`SMALLEST_POOLED`] are not pooled at
    /// all. Returns how many buffers it added.
    pub fn prepare(&self, len: usize, count: usize) -> usize {
        if len < SMALLEST_POOLED {
            return 0;
        }
        let mut added = 0;
        while added < count {
            {
                let mut free = self.lock();
                if !self.has_room_for(&free, len) {
                    break;
                }
                // Counted while it is made, outside the lock: puts go on meanwhile.
                free.allocated += len as u64;
                free.reserved += len as u64;
            }
            if !self.give_back(Buffer::written(len), len as u64) {
                break;
            }
            added += 1;
        }
        added
    }

    /// Whether one more free buffer of `len` bytes fits the pool and the budget.
    fn has_room_for(&self, free: &Free, len: usize) -> bool {
        let len = len as u64;
        free.bytes + len <= self.max_bytes
            && free.reserved + free.bytes + free.making + len <= self.limit
    }

    /// The most recently returned buffer if it is large enough, else a new one.
    /// A recycled buffer is held whole: `reservation` grows to its capacity
    /// (the free bytes shrink by as much, so the budget's total only falls).
    /// Taking the last free large buffer asks for a spare.
    fn take(self: &Arc<Self>, len: usize, reservation: &mut Reservation) -> Buffer {
        let mut free = self.lock();
        let mut found = None;
        let mut too_small = None;
        if let Some(buffer) = free.buffers.pop() {
            free.bytes -= buffer.capacity() as u64;
            if buffer.capacity() >= len {
                let more = (buffer.capacity() as u64).saturating_sub(reservation.bytes);
                free.reserved += more;
                reservation.bytes += more;
                found = Some(buffer);
            } else {
                free.allocated -= buffer.capacity() as u64;
                too_small = Some(buffer);
            }
        }
        let buffer = found.unwrap_or_else(|| {
            free.allocated += len as u64;
            Buffer::new(len)
        });
        if self.keeps_a_spare && len >= HUGE_PAGE && free.buffers.is_empty() {
            self.want_a_spare(free, len);
        } else {
            drop(free);
        }
        drop(too_small);
        buffer
    }

    /// Asks the spare-buffer thread (started here the first time) for a
    /// buffer of `len` bytes, if the byte limit and the budget allow one more.
    fn want_a_spare(self: &Arc<Self>, mut free: MutexGuard<'_, Free>, len: usize) {
        if free.stopped
            || free.spare.is_some()
            || free.allocated + len as u64 > self.max_bytes
            || !self.has_room_for(&free, len)
        {
            return;
        }
        free.spare = Some(len);
        drop(free);
        self.spare_wanted.notify_one();
        let mut thread = self.spare_thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let pool = Arc::clone(self);
            // Without the thread the pool works as without spares.
            *thread = std::thread::Builder::new()
                .name("pyme-spare-buffer".into())
                .spawn(move || pool.make_spares())
                .ok();
        }
    }

    /// The spare-buffer thread: makes each wanted spare, written once so that
    /// its pages are backed, unless a buffer came back meanwhile. The spare
    /// is reserved in the budget while it is made.
    fn make_spares(&self) {
        crate::threads::yield_to_producers();
        let mut free = self.lock();
        loop {
            if free.stopped {
                return;
            }
            let Some(len) = free.spare else {
                free = self
                    .spare_wanted
                    .wait(free)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            };
            if free.buffers.is_empty()
                && free.allocated + len as u64 <= self.max_bytes
                && self.has_room_for(&free, len)
            {
                free.allocated += len as u64;
                free.making = len as u64;
                drop(free);
                let spare = Buffer::written(len);
                free = self.lock();
                free.making = 0;
                let capacity = spare.capacity() as u64;
                let fits = free.reserved + free.bytes + capacity <= self.limit;
                if std::mem::take(&mut free.drop_spare) || !fits {
                    // A file took its room meanwhile.
                    free.allocated -= capacity;
                    drop(free);
                    drop(spare);
                    free = self.lock();
                } else {
                    free.bytes += capacity;
                    free.buffers.insert(0, spare);
                }
            }
            free.spare = None;
        }
    }

    /// Ends the spare-buffer thread, if it runs (waits for a spare being made).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.spare_wanted.notify_all();
        let thread = self
            .spare_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Gives the `reserved` bytes of `buffer` back to the budget and keeps
    /// the buffer for later copies if the pool and the budget have room for
    /// it (true), else frees it.
    fn give_back(&self, buffer: Buffer, reserved: u64) -> bool {
        let mut free = self.lock();
        free.reserved -= reserved;
        let capacity = buffer.capacity() as u64;
        let room = free.bytes + capacity <= self.max_bytes
            && free.reserved + free.bytes + capacity <= self.limit;
        let unused = if room {
            free.bytes += capacity;
            free.buffers.push(buffer);
            None
        } else {
            free.allocated -= capacity;
            Some(buffer)
        };
        self.unreserve(free, 0);
        drop(unused);
        room
    }
}

/// A pooled buffer inside a `Bytes`, with the room it holds in the budget:
/// both back to the pool when the last clone goes.
struct Pooled {
    buffer: Buffer,
    reservation: Reservation,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buffer.bytes()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buffer = std::mem::replace(&mut self.buffer, Buffer::empty());
        let reserved = std::mem::take(&mut self.reservation.bytes);
        self.reservation.pool.give_back(buffer, reserved);
    }
}

/// One heap allocation holding the copy of one file: `len` bytes written of
/// `layout.size()`. Large ones are aligned to `HUGE_PAGE` (see the module
/// comment); `Vec<u8>` cannot be, as it always frees with alignment 1.
struct Buffer {
    start: NonNull<u8>,
    layout: Layout,
    len: usize,
}

// SAFETY: a `Buffer` owns its allocation alone, like a `Vec<u8>`.
unsafe impl Send for Buffer {}

impl Buffer {
    fn new(capacity: usize) -> Buffer {
        let align = if capacity >= HUGE_PAGE { HUGE_PAGE } else { 64 };
        let layout =
            Layout::from_size_align(capacity.max(1), align).expect("buffer size overflows");
        // SAFETY: the layout's size is not zero.
        let start = NonNull::new(unsafe { alloc::alloc(layout) })
            .unwrap_or_else(|| alloc::handle_alloc_error(layout));
        if align == HUGE_PAGE {
            ask_for_huge_pages(start, layout.size());
        }
        Buffer {
            start,
            layout,
            len: 0,
        }
    }

    /// A new buffer with every byte written (zero), so that its pages are
    /// backed now and not by the copy that will use it.
    fn written(capacity: usize) -> Buffer {
        let buffer = Buffer::new(capacity);
        // SAFETY: the allocation holds `capacity` bytes.
        unsafe { std::ptr::write_bytes(buffer.start.as_ptr(), 0, buffer.capacity()) };
        buffer
    }

    /// Holds nothing and frees nothing: what a `Pooled` keeps after giving its
    /// buffer back.
    fn empty() -> Buffer {
        Buffer {
            start: NonNull::dangling(),
            layout: Layout::new::<()>(),
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Makes the buffer hold a copy of `data`, which must fit.
    fn fill(&mut self, data: &[u8]) {
        assert!(data.len() <= self.capacity(), "buffer too small");
        // Unoptimized (debug) builds copy plainly: the streaming loop without
        // optimization is some 20 times slower than `memcpy`.
        let streaming = data.len() >= HUGE_PAGE && !cfg!(debug_assertions);
        // SAFETY: the destination holds `capacity` bytes, the source is a
        // separate live slice, and a buffer is aligned to 64 bytes at least.
        unsafe {
            if streaming {
                copy_streaming(data, self.start.as_ptr());
            } else {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.start.as_ptr(), data.len());
            }
        }
        self.len = data.len();
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `fill`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.layout.size() > 0 {
            // SAFETY: allocated in `new` with this layout.
            unsafe { alloc::dealloc(self.start.as_ptr(), self.layout) };
        }
    }
}

/// Advice only: a kernel without transparent huge pages, or with them turned
/// off, refuses or ignores it, and the buffer works the same.
#[cfg(target_os = "linux")]
fn ask_for_huge_pages(start: NonNull<u8>, len: usize) {
    let whole_pages = len / HUGE_PAGE * HUGE_PAGE;
    // SAFETY: the range lies inside one live allocation, and the advice
    // changes no contents.
    unsafe { libc::madvise(start.as_ptr().cast(), whole_pages, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn ask_for_huge_pages(_start: NonNull<u8>, _len: usize) {}

/// How far ahead of the copy [`copy_streaming`] asks for the source: 8 to
/// 10 % off the median copy of an 8 MiB frame on the test machine, with 512 B
/// to 2 KiB alike (docs/PERFORMANCE.md, "Sixth session").
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 1024;

/// Copies `data` to `to` with SSE2 streaming stores, 64 bytes (one cache line)
/// at a time, prefetching the source ahead, and the tail with a plain copy.
///
/// # Safety
/// `to` is aligned to 16 bytes, holds `data.len()` bytes and does not overlap
/// `data`.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_streaming(data: &[u8], to: *mut u8) {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_prefetch, _mm_sfence, _mm_stream_si128, _MM_HINT_NTA,
    };
    const LINE: usize = 64;
    let whole = data.len() / LINE * LINE;
    let from = data.as_ptr();
    for line in (0..whole).step_by(LINE) {
        // Asks for the source 1 KiB ahead: the hardware's own prefetcher stops
        // at each 4 KiB page of the caller's frame, this one does not. A
        // prefetch never faults, so the last lines may ask past the end
        // (`wrapping_add` keeps that address computation defined).
        // SAFETY: SSE is part of x86_64; a prefetch reads nothing.
        unsafe {
            _mm_prefetch::<_MM_HINT_NTA>(from.wrapping_add(line + PREFETCH_AHEAD).cast::<i8>());
        }
        // SAFETY: (all four) inside both ranges, and the stores are aligned.
        unsafe {
            let a = _mm_loadu_si128(from.add(line).cast::<__m128i>());
            let b = _mm_loadu_si128(from.add(line + 16).cast::<__m128i>());
            let c = _mm_loadu_si128(from.add(line + 32).cast::<__m128i>());
            let d = _mm_loadu_si128(from.add(line + 48).cast::<__m128i>());
            _mm_stream_si128(to.add(line).cast::<__m128i>(), a);
            _mm_stream_si128(to.add(line + 16).cast::<__m128i>(), b);
            _mm_stream_si128(to.add(line + 32).cast::<__m128i>(), c);
            _mm_stream_si128(to.add(line + 48).cast::<__m128i>(), d);
        }
    }
    // SAFETY: as above; the fence orders the streaming stores before the
    // hand-off of the buffer to the sender thread.
    unsafe {
        _mm_sfence();
        std::ptr::copy_nonoverlapping(from.add(whole), to.add(whole), data.len() - whole);
    }
}

/// Other architectures: a plain copy.
///
/// # Safety
/// `to` holds `data.len()` bytes and does not overlap `data`.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_streaming(data: &[u8], to: *mut u8) {
    // SAFETY: the caller's promise.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> bool {
        true
    }

    /// A wait that gives up at once.
    fn at_once() -> RoomWait<'static> {
        RoomWait {
            deadline: Some(Instant::now()),
            interrupt: None,
            open: &open,
            share: None,
        }
    }

    /// A copy as a put makes it: room first, then the copy (the room of a
    /// small copy held by the copy, as a `Job` would hold it).
    fn copied(pool: &Arc<BufferPool>, data: &[u8]) -> Bytes {
        let room = pool.reserve(data.len() as u64, &at_once()).ok().unwrap();
        match pool.copy(data, room) {
            (copy, None) => copy,
            (copy, Some(room)) => room.hold(copy),
        }
    }

    fn total(pool: &BufferPool) -> u64 {
        let free = pool.lock();
        free.reserved + free.bytes
    }

    #[test]
    fn the_budget_bounds_copies_and_zero_copy_files_alike_and_comes_back() {
        let pool = BufferPool::new(u64::MAX, 3 * HUGE_PAGE as u64, false);
        let frame = vec![7u8; HUGE_PAGE];
        let first = copied(&pool, &frame);
        let room = pool.reserve(HUGE_PAGE as u64, &at_once()).ok().unwrap();
        let zero_copy = room.hold(Bytes::from(frame.clone()));
        let second = copied(&pool, &frame[..HUGE_PAGE / 2]);
        assert_eq!(pool.reserved(), 3 * HUGE_PAGE as u64 - HUGE_PAGE as u64 / 2);
        assert_eq!(
            pool.reserve(HUGE_PAGE as u64, &at_once()).err(),
            Some(Shortfall::Full {
                held: 5 * HUGE_PAGE as u64 / 2
            })
        );
        let clone = zero_copy.clone();
        drop(zero_copy);
        assert_eq!(
            pool.reserved(),
            5 * HUGE_PAGE as u64 / 2,
            "a clone still holds it"
        );
        drop((clone, second));
        assert_eq!(pool.reserved(), HUGE_PAGE as u64);
        drop(first);
        assert_eq!(pool.reserved(), 0);
        assert!(total(&pool) <= 3 * HUGE_PAGE as u64);
    }

    #[test]
    fn free_buffers_give_way_to_files_that_need_their_room() {
        let limit = 4 * HUGE_PAGE as u64;
        let pool = BufferPool::new(u64::MAX, limit, false);
        let frame = vec![1u8; HUGE_PAGE];
        let copies: Vec<Bytes> = (0..4).map(|_| copied(&pool, &frame)).collect();
        drop(copies);
        assert_eq!((pool.free_bytes(), pool.reserved()), (limit, 0), "pooled");
        // Zero-copy files cannot use the pool: it shrinks for them.
        let held: Vec<Bytes> = (0..3)
            .map(|_| {
                let room = pool.reserve(HUGE_PAGE as u64, &at_once()).ok().unwrap();
                room.hold(Bytes::from(frame.clone()))
            })
            .collect();
        assert_eq!(pool.free_bytes(), HUGE_PAGE as u64);
        assert_eq!(total(&pool), limit);
        assert_eq!(pool.lock().allocated, HUGE_PAGE as u64);
        drop(held);
        assert_eq!(total(&pool), HUGE_PAGE as u64);
    }

    #[test]
    fn a_recycled_buffer_holds_its_whole_capacity_in_the_budget() {
        let pool = BufferPool::new(u64::MAX, 8 * HUGE_PAGE as u64, false);
        drop(copied(&pool, &vec![1u8; 4 * HUGE_PAGE]));
        let small = copied(&pool, &[2u8; 100 * 1024]);
        assert_eq!(pool.reserved(), 4 * HUGE_PAGE as u64);
        assert_eq!(pool.free_bytes(), 0);
        drop(small);
        assert_eq!(
            (pool.reserved(), pool.free_bytes()),
            (0, 4 * HUGE_PAGE as u64)
        );
    }

    #[test]
    fn a_file_larger_than_the_budget_goes_alone() {
        for limit in [0, 1, 1000] {
            let pool = BufferPool::new(u64::MAX, limit, false);
            let big = copied(&pool, &[3u8; 200 * 1024]);
            assert_eq!(
                pool.reserve(1, &at_once()).err(),
                Some(Shortfall::Full { held: 200 * 1024 }),
                "limit {limit}"
            );
            drop(big);
            assert_eq!((pool.reserved(), pool.free_bytes()), (0, 0), "not pooled");
            let small = pool.reserve(1, &at_once()).ok().unwrap();
            drop(small);
        }
    }

    #[test]
    fn a_waiting_reserve_ends_when_room_comes_when_closed_and_when_interrupted() {
        let pool = BufferPool::new(u64::MAX, 100, false);
        let held = pool.reserve(100, &at_once()).ok().unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                let forever = RoomWait {
                    deadline: None,
                    interrupt: None,
                    open: &open,
                    share: None,
                };
                pool.reserve(60, &forever).map(|room| room.bytes)
            })
        };
        while pool.lock().waiting == 0 {
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(60));
        // Closed: a wait without a deadline ends when told.
        let held = pool.reserve(100, &at_once()).ok().unwrap();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (pool, closed) = (Arc::clone(&pool), Arc::clone(&closed));
            std::thread::spawn(move || {
                let open = || !closed.load(std::sync::atomic::Ordering::SeqCst);
                let forever = RoomWait {
                    deadline: None,
                    interrupt: None,
                    open: &open,
                    share: None,
                };
                pool.reserve(60, &forever).err()
            })
        };
        while pool.lock().waiting == 0 {
            std::thread::yield_now();
        }
        closed.store(true, std::sync::atomic::Ordering::SeqCst);
        pool.wake_waiters();
        assert_eq!(waiter.join().unwrap(), Some(Shortfall::Closed));
        let check: InterruptCheck = Arc::new(|| true);
        let interrupted = RoomWait {
            deadline: None,
            interrupt: Some(&check),
            open: &open,
            share: None,
        };
        assert_eq!(
            pool.reserve(60, &interrupted).err(),
            Some(Shortfall::Interrupted)
        );
        drop(held);
        assert_eq!(pool.reserved(), 0);
    }

    /// Found by the 64-server acceptance run under load: a spare being made
    /// held budget room, and a fail-fast put was refused meanwhile.
    #[test]
    fn a_spare_being_made_gives_way_to_a_file() {
        let pool = BufferPool::new(u64::MAX, 4 * HUGE_PAGE as u64, true);
        let held = pool.reserve(3 * HUGE_PAGE as u64, &at_once()).ok().unwrap();
        // As the spare-buffer thread does while it writes a spare.
        pool.lock().making = HUGE_PAGE as u64;
        let file = pool.reserve(HUGE_PAGE as u64, &at_once());
        assert!(file.is_ok(), "the spare does not make the put fail");
        assert!(pool.lock().drop_spare, "the spare is freed once made");
        pool.lock().making = 0;
        drop((held, file));
    }

    #[test]
    fn filter_output_overdraws_the_budget_one_sender_at_a_time() {
        let pool = BufferPool::new(u64::MAX, 100, false);
        let files = pool.reserve(100, &at_once()).ok().unwrap();
        let first = pool.reserve_output(50);
        assert!(first.overdraft, "the budget is full: the one overdraft");
        let second = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || pool.reserve_output(50).overdraft)
        };
        while pool.lock().waiting == 0 {
            std::thread::yield_now();
        }
        assert_eq!(pool.reserved(), 150, "the second waits");
        drop(first);
        assert!(second.join().unwrap(), "then it overdraws in turn");
        drop(files);
        assert!(!pool.reserve_output(50).overdraft, "room: no overdraft");
        assert_eq!(pool.reserved(), 0);
        assert!(!pool.lock().overdraft);
    }

    #[test]
    fn a_returned_buffer_is_reused_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(300 * 1024, u64::MAX, false);
        let first = copied(&pool, &[1u8; 100 * 1024]);
        let address = first.as_ptr();
        assert_eq!(&first[..], &[1u8; 100 * 1024][..]);
        drop(first);
        let second = copied(&pool, &[2u8; 90 * 1024]);
        assert_eq!(second.as_ptr(), address, "the same buffer again");
        assert_eq!(&second[..], &[2u8; 90 * 1024][..]);
        let held: Vec<Bytes> = (0..5).map(|_| copied(&pool, &[3u8; 100 * 1024])).collect();
        drop(held);
        let free = pool.free.lock().unwrap();
        assert!(free.bytes <= 300 * 1024);
        assert_eq!(
            free.bytes,
            free.buffers
                .iter()
                .map(|b| b.capacity() as u64)
                .sum::<u64>()
        );
    }

    #[test]
    fn a_reservation_with_a_share_stays_within_it_or_goes_alone() {
        let pool = BufferPool::new(0, 1000, false);
        let open = || true;
        let now = Some(Instant::now());
        let share = |share| RoomWait {
            deadline: now,
            interrupt: None,
            open: &open,
            share,
        };
        // Alone: any size, even past the share.
        let alone = pool.reserve(600, &share(Some(4))).unwrap();
        assert!(pool.reserve(1, &share(Some(4))).is_err());
        drop(alone);
        let first = pool.reserve(250, &share(Some(4))).unwrap();
        assert_eq!(
            pool.reserve(1, &share(Some(4))).err(),
            Some(Shortfall::Full { held: 250 })
        );
        // Others take the rest of the budget.
        let rest = pool.reserve(750, &share(None)).unwrap();
        drop((first, rest));
    }

    #[test]
    fn prepared_buffers_serve_the_next_copies_within_the_byte_limit() {
        let pool = BufferPool::new(5 * HUGE_PAGE as u64, u64::MAX, false);
        assert_eq!(
            pool.prepare(SMALLEST_POOLED - 1, 4),
            0,
            "small files are not pooled"
        );
        assert_eq!(pool.prepare(2 * HUGE_PAGE, 4), 2, "the limit allows two");
        let prepared: Vec<*const u8> = {
            let free = pool.free.lock().unwrap();
            assert_eq!(free.bytes, 4 * HUGE_PAGE as u64);
            free.buffers
                .iter()
                .map(|b| b.start.as_ptr().cast_const())
                .collect()
        };
        let data: Vec<u8> = (0..2 * HUGE_PAGE).map(|i| (i % 249) as u8).collect();
        let first = copied(&pool, &data);
        let second = copied(&pool, &data[..HUGE_PAGE + 5]);
        assert_eq!(first.as_ptr(), prepared[1]);
        assert_eq!(second.as_ptr(), prepared[0]);
        assert!(first[..] == data[..] && second[..] == data[..HUGE_PAGE + 5]);
        assert_eq!(pool.free.lock().unwrap().bytes, 0);
        drop((first, second));
        assert_eq!(
            pool.prepare(2 * HUGE_PAGE, 1),
            0,
            "the two are back: no room"
        );
    }

    /// Waits (without a time limit that could fail the test on a busy
    /// machine, up to a minute) until the pool holds `count` free buffers.
    fn wait_for_free(pool: &BufferPool, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while pool.lock().buffers.len() < count {
            assert!(std::time::Instant::now() < deadline, "no spare came");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn taking_the_last_large_buffer_makes_a_spare_within_the_byte_limit() {
        let len = 2 * HUGE_PAGE;
        let pool = BufferPool::new(3 * len as u64, u64::MAX, true);
        let data: Vec<u8> = (0..len).map(|i| (i % 247) as u8).collect();
        let first = copied(&pool, &data);
        wait_for_free(&pool, 1);
        let spare = pool.lock().buffers[0].start.as_ptr().cast_const();
        let second = copied(&pool, &data);
        assert_eq!(second.as_ptr(), spare, "the spare serves the next copy");
        wait_for_free(&pool, 1);
        let third = copied(&pool, &data);
        {
            // Three buffers make the limit: no fourth is asked for.
            let free = pool.lock();
            assert_eq!(
                (free.allocated, free.spare, free.buffers.len()),
                (3 * len as u64, None, 0)
            );
        }
        assert!(first[..] == data[..] && second[..] == data[..] && third[..] == data[..]);
        drop((first, second, third));
        assert_eq!(pool.lock().bytes, 3 * len as u64);
        pool.stop();
        assert!(pool.spare_thread.lock().unwrap().is_none());
    }

    #[test]
    fn small_files_and_a_stopped_pool_ask_for_no_spare() {
        let pool = BufferPool::new(64 << 20, u64::MAX, true);
        let data = vec![5u8; 2 * HUGE_PAGE];
        let small = copied(&pool, &data[..HUGE_PAGE - 1]);
        assert_eq!(pool.lock().spare, None);
        assert!(pool.spare_thread.lock().unwrap().is_none());
        pool.stop();
        let large = copied(&pool, &data);
        assert!(small[..] == data[..HUGE_PAGE - 1] && large[..] == data[..]);
        assert_eq!(pool.lock().spare, None);
        assert!(pool.spare_thread.lock().unwrap().is_none());
    }

    /// `copy_streaming` directly: debug builds do not use it in `fill`.
    #[test]
    fn streaming_copies_are_exact_at_any_length_and_source_offset() {
        let data: Vec<u8> = (0..HUGE_PAGE + 300).map(|i| (i % 253) as u8).collect();
        let mut target = Buffer::new(HUGE_PAGE + 300);
        for (start, end) in [(0, 0), (0, 63), (1, 64), (3, 1000), (5, HUGE_PAGE + 300)] {
            let part = &data[start..end];
            // SAFETY: the buffer is aligned and large enough, and separate.
            unsafe { copy_streaming(part, target.start.as_ptr()) };
            target.len = part.len();
            assert!(target.bytes() == part, "{start}..{end}");
        }
    }

    #[test]
    fn large_buffers_start_on_a_huge_page_and_hold_their_copy() {
        let pool = BufferPool::new(64 << 20, u64::MAX, false);
        let data: Vec<u8> = (0..5 * HUGE_PAGE + 123).map(|i| (i % 251) as u8).collect();
        let copy = copied(&pool, &data);
        let address = copy.as_ptr();
        assert_eq!(address as usize % HUGE_PAGE, 0);
        assert_eq!(&copy[..], &data[..]);
        // A source that is not aligned, of a length that is no whole number
        // of cache lines.
        let shifted = copied(&pool, &data[1..4 * HUGE_PAGE + 100]);
        assert_eq!(&shifted[..], &data[1..4 * HUGE_PAGE + 100]);
        drop(shifted);
        let small = copied(&pool, &data[..100 * 1024]);
        assert_eq!(&small[..], &data[..100 * 1024]);
        drop(small);
        drop(copy);
        // The large buffer comes back for a smaller file, holding only it.
        let again = copied(&pool, &data[..3 * HUGE_PAGE]);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again.len(), 3 * HUGE_PAGE);
        assert_eq!(&again[..], &data[..3 * HUGE_PAGE]);
    }
}
