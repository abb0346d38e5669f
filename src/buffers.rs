//! Recycles the buffers that a copying `put` copies large files into, so a
//! steady stream of camera frames allocates (and page-faults) nothing: a
//! buffer goes back to the pool when its file has its outcome.
//!
//! The pool never holds more than the streamer's total queue byte limit, and
//! since every pooled buffer once held a queued file, memory stays bounded by
//! the queue limits.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Files smaller than this are copied into a plain allocation: the allocator
/// is as fast as the pool for them.
const SMALLEST_POOLED: usize = 64 * 1024;

pub(crate) struct BufferPool {
    free: Mutex<Free>,
    max_bytes: u64,
}

#[derive(Default)]
struct Free {
    buffers: Vec<Vec<u8>>,
    bytes: u64,
}

impl BufferPool {
    pub fn new(max_bytes: u64) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Free::default()),
            max_bytes,
        })
    }

    /// A copy of `data` in a recycled buffer.
    pub fn copy(self: &Arc<Self>, data: &[u8]) -> Bytes {
        if data.len() < SMALLEST_POOLED {
            return Bytes::copy_from_slice(data);
        }
        let mut buffer = self.take(data.len());
        buffer.extend_from_slice(data);
        Bytes::from_owner(Pooled {
            buffer,
            pool: Arc::clone(self),
        })
    }

    /// The most recently returned buffer if it is large enough, else a new one.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buffer) = free.buffers.pop() {
            free.bytes -= buffer.capacity() as u64;
            if buffer.capacity() >= len {
                return buffer;
            }
        }
        Vec::with_capacity(len)
    }

    fn give_back(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.bytes + buffer.capacity() as u64 <= self.max_bytes {
            free.bytes += buffer.capacity() as u64;
            free.buffers.push(buffer);
        }
    }
}

/// A pooled buffer inside a `Bytes`: back to the pool when the last clone goes.
struct Pooled {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_and_the_pool_stays_bounded() {
        let pool = BufferPool::new(300 * 1024);
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
}
