//! Recycles the buffers that a copying `put` copies large files into, so a
//! steady stream of camera frames allocates (and page-faults) nothing: a
//! buffer goes back to the pool when its file has its outcome.
//!
//! The pool never holds more than the streamer's total queue byte limit, and
//! since every pooled buffer once held a queued file, memory stays bounded by
//! the queue limits.
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
//! must back every page: 1.6 to 30 ms for 8 MiB on the test machine, against
//! under 1 ms for a recycled buffer). So a streamer's pool keeps one spare
//! large buffer ready: when a `put` takes the last free one, a helper thread
//! (`pyme-spare-buffer`) makes and writes the next, within the byte limit.
//! [`BufferPool::prepare`] (`Streamer::prepare_buffers`) does the same ahead
//! of time, for as many buffers as the caller asks.
//!
//! Measurements: "The put copy: huge pages and streaming stores" in
//! docs/PERFORMANCE.md.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

/// Files smaller than this are copied into a plain allocation: the allocator
/// is as fast as the pool for them.
const SMALLEST_POOLED: usize = 64 * 1024;

/// The size of a transparent huge page on x86-64 and (with 4 KiB base pages)
/// aarch64; also the smallest file copied with streaming stores.
const HUGE_PAGE: usize = 2 * 1024 * 1024;

pub(crate) struct BufferPool {
    free: Mutex<Free>,
    max_bytes: u64,
    /// Whether a spare large buffer is kept ready (see the module comment).
    keeps_a_spare: bool,
    /// Wakes the spare-buffer thread.
    spare_wanted: Condvar,
    spare_thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Free {
    buffers: Vec<Buffer>,
    bytes: u64,
    /// Bytes in every buffer of the pool, free or holding a file.
    allocated: u64,
    /// The length of the spare buffer wanted, if one is.
    spare: Option<usize>,
    stopped: bool,
}

impl BufferPool {
    /// A pool of at most `max_bytes` of free buffers; with `keep_a_spare`, it
    /// keeps a spare large buffer ready (see the module comment), and
    /// [`Self::stop`] ends the thread that makes it.
    pub fn new(max_bytes: u64, keep_a_spare: bool) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Free::default()),
            max_bytes,
            keeps_a_spare: keep_a_spare,
            spare_wanted: Condvar::new(),
            spare_thread: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of `data` in a recycled buffer.
    pub fn copy(self: &Arc<Self>, data: &[u8]) -> Bytes {
        if data.len() < SMALLEST_POOLED {
            return Bytes::copy_from_slice(data);
        }
        let mut buffer = self.take(data.len());
        buffer.fill(data);
        Bytes::from_owner(Pooled {
            buffer,
            pool: Arc::clone(self),
        })
    }

    /// Puts up to `count` new buffers for files of `len` bytes into the pool,
    /// each written once so that its pages are faulted in now and not by a
    /// `put`. On the test machine the first fill of a new 8 MiB buffer took
    /// 1.6 to 30 ms, against under 1 ms for a recycled one. Stops where the pool
    /// would exceed its byte limit; files below [`SMALLEST_POOLED`] are not
    /// pooled at all. Returns how many buffers it added.
    pub fn prepare(&self, len: usize, count: usize) -> usize {
        if len < SMALLEST_POOLED {
            return 0;
        }
        let mut added = 0;
        while added < count && self.has_room_for(len) {
            // Made and written outside the lock: puts go on meanwhile.
            self.lock().allocated += len as u64;
            if !self.give_back(Buffer::written(len)) {
                break;
            }
            added += 1;
        }
        added
    }

    fn has_room_for(&self, len: usize) -> bool {
        self.lock().bytes + len as u64 <= self.max_bytes
    }

    /// The most recently returned buffer if it is large enough, else a new one.
    /// Taking the last free large buffer asks for a spare.
    fn take(self: &Arc<Self>, len: usize) -> Buffer {
        let mut free = self.lock();
        let mut found = None;
        if let Some(buffer) = free.buffers.pop() {
            free.bytes -= buffer.capacity() as u64;
            if buffer.capacity() >= len {
                found = Some(buffer);
            } else {
                free.allocated -= buffer.capacity() as u64;
            }
        }
        let buffer = found.unwrap_or_else(|| {
            free.allocated += len as u64;
            Buffer::new(len)
        });
        if self.keeps_a_spare && len >= HUGE_PAGE && free.buffers.is_empty() {
            self.want_a_spare(free, len);
        }
        buffer
    }

    /// Asks the spare-buffer thread (started here the first time) for a
    /// buffer of `len` bytes, if the byte limit allows one more.
    fn want_a_spare(self: &Arc<Self>, mut free: MutexGuard<'_, Free>, len: usize) {
        if free.stopped || free.spare.is_some() || free.allocated + len as u64 > self.max_bytes {
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
    /// its pages are backed, unless a buffer came back meanwhile.
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
            if free.buffers.is_empty() && free.allocated + len as u64 <= self.max_bytes {
                free.allocated += len as u64;
                drop(free);
                let spare = Buffer::written(len);
                free = self.lock();
                free.bytes += spare.capacity() as u64;
                free.buffers.insert(0, spare);
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

    /// Keeps `buffer` for later copies if the pool has room for it (true),
    /// else frees it.
    fn give_back(&self, buffer: Buffer) -> bool {
        let mut free = self.lock();
        let room = free.bytes + buffer.capacity() as u64 <= self.max_bytes;
        if room {
            free.bytes += buffer.capacity() as u64;
            free.buffers.push(buffer);
        } else {
            free.allocated -= buffer.capacity() as u64;
        }
        room
    }
}

/// A pooled buffer inside a `Bytes`: back to the pool when the last clone goes.
struct Pooled {
    buffer: Buffer,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buffer.bytes()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buffer = std::mem::replace(&mut self.buffer, Buffer::empty());
        self.pool.give_back(buffer);
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

    #[test]
    fn a_returned_buffer_is_reused_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(300 * 1024, false);
        let first = pool.copy(&[1u8; 100 * 1024]);
        let address = first.as_ptr();
        assert_eq!(&first[..], &[1u8; 100 * 1024][..]);
        drop(first);
        let second = pool.copy(&[2u8; 90 * 1024]);
        assert_eq!(second.as_ptr(), address, "the same buffer again");
        assert_eq!(&second[..], &[2u8; 90 * 1024][..]);
        let held: Vec<Bytes> = (0..5).map(|_| pool.copy(&[3u8; 100 * 1024])).collect();
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
    fn prepared_buffers_serve_the_next_copies_within_the_byte_limit() {
        let pool = BufferPool::new(5 * HUGE_PAGE as u64, false);
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
        let first = pool.copy(&data);
        let second = pool.copy(&data[..HUGE_PAGE + 5]);
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
        let pool = BufferPool::new(3 * len as u64, true);
        let data: Vec<u8> = (0..len).map(|i| (i % 247) as u8).collect();
        let first = pool.copy(&data);
        wait_for_free(&pool, 1);
        let spare = pool.lock().buffers[0].start.as_ptr().cast_const();
        let second = pool.copy(&data);
        assert_eq!(second.as_ptr(), spare, "the spare serves the next copy");
        wait_for_free(&pool, 1);
        let third = pool.copy(&data);
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
        let pool = BufferPool::new(64 << 20, true);
        let data = vec![5u8; 2 * HUGE_PAGE];
        let small = pool.copy(&data[..HUGE_PAGE - 1]);
        assert_eq!(pool.lock().spare, None);
        assert!(pool.spare_thread.lock().unwrap().is_none());
        pool.stop();
        let large = pool.copy(&data);
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
        let pool = BufferPool::new(64 << 20, false);
        let data: Vec<u8> = (0..5 * HUGE_PAGE + 123).map(|i| (i % 251) as u8).collect();
        let copy = pool.copy(&data);
        let address = copy.as_ptr();
        assert_eq!(address as usize % HUGE_PAGE, 0);
        assert_eq!(&copy[..], &data[..]);
        // A source that is not aligned, of a length that is no whole number
        // of cache lines.
        let shifted = pool.copy(&data[1..4 * HUGE_PAGE + 100]);
        assert_eq!(&shifted[..], &data[1..4 * HUGE_PAGE + 100]);
        drop(shifted);
        let small = pool.copy(&data[..100 * 1024]);
        assert_eq!(&small[..], &data[..100 * 1024]);
        drop(small);
        drop(copy);
        // The large buffer comes back for a smaller file, holding only it.
        let again = pool.copy(&data[..3 * HUGE_PAGE]);
        assert_eq!(again.as_ptr(), address);
        assert_eq!(again.len(), 3 * HUGE_PAGE);
        assert_eq!(&again[..], &data[..3 * HUGE_PAGE]);
    }
}
