//! The links of a streamer: a list that only grows, read without a lock.
//!
//! A server's index is its position here, stable for the streamer's life:
//! links are only ever appended (live membership adds the servers discovery
//! finds during a run, see `membership`), never removed or moved. The slots
//! are allocated once, at start: as many as the servers given when the
//! membership is fixed (then nothing ever grows, and reading costs what a
//! `Vec` did, plus one load), [`MAX_SERVERS`] with live membership.
//!
//! In scope: storing, appending and reading links.
//! Out of scope: what a link does (see `link`), deciding which servers join
//! (see `membership`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::link::Link;

/// The most servers a streamer with live membership holds, those given and
/// found together (at 5 descriptors each, 5,120 descriptors: the descriptor
/// check refuses far fewer under the usual limits).
pub const MAX_SERVERS: usize = 1024;

/// The links now, in order (see [`Links::iter`]).
pub(crate) type Iter<'a> = std::iter::FilterMap<
    std::slice::Iter<'a, OnceLock<Link>>,
    fn(&'a OnceLock<Link>) -> Option<&'a Link>,
>;

/// The links of a streamer, in the order they joined.
pub(crate) struct Links {
    slots: Box<[OnceLock<Link>]>,
    /// Slots filled: each below it holds a link.
    len: AtomicUsize,
    /// Appends one at a time.
    appending: Mutex<()>,
}

impl Links {
    /// `links`, with room for `capacity` in all (at least as many as given).
    pub fn new(links: Vec<Link>, capacity: usize) -> Links {
        let capacity = capacity.max(links.len());
        let slots: Box<[OnceLock<Link>]> = (0..capacity).map(|_| OnceLock::new()).collect();
        let len = links.len();
        for (slot, link) in slots.iter().zip(links) {
            let _ = slot.set(link);
        }
        Links {
            slots,
            len: AtomicUsize::new(len),
            appending: Mutex::new(()),
        }
    }

    /// Number of links now. It only grows.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// How many links this list can ever hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The link at `index`, if it has joined.
    pub fn get(&self, index: usize) -> Option<&Link> {
        if index >= self.len() {
            return None;
        }
        self.slots[index].get()
    }

    /// The links now, in order (a link that joins meanwhile may be left out).
    pub fn iter(&self) -> Iter<'_> {
        self.slots[..self.len()].iter().filter_map(OnceLock::get)
    }

    /// Appends `link`: its index, or `None` (the link dropped) when the
    /// list is full.
    pub fn push(&self, link: Link) -> Option<usize> {
        let _one_at_a_time = self.appending.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.len.load(Ordering::Acquire);
        self.slots.get(index)?.set(link).ok()?;
        // Published after the slot is filled: a reader that sees the length
        // sees the link.
        self.len.store(index + 1, Ordering::Release);
        Some(index)
    }
}

impl std::ops::Index<usize> for Links {
    type Output = Link;

    /// The link at `index`; panics if none has joined there (as a `Vec`).
    fn index(&self, index: usize) -> &Link {
        match self.slots.get(index).and_then(OnceLock::get) {
            Some(link) => link,
            None => panic!("no link {index} (of {})", self.len()),
        }
    }
}

impl<'a> IntoIterator for &'a Links {
    type Item = &'a Link;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamerOptions;

    fn link(name: &str) -> Link {
        Link::new(name.into(), &StreamerOptions::new())
    }

    #[test]
    fn links_are_appended_in_order_up_to_the_capacity_and_keep_their_index() {
        let links = Links::new(vec![link("a"), link("b")], 3);
        assert_eq!((links.len(), links.capacity()), (2, 3));
        assert!(links.get(2).is_none());
        assert_eq!(links.push(link("c")), Some(2));
        assert_eq!(links.push(link("d")), None);
        let names: Vec<&str> = links.iter().map(|l| l.server.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(links[1].server, "b");
        assert_eq!(links.get(2).map(|l| l.server.as_str()), Some("c"));
        // A fixed list has no spare slot.
        let fixed = Links::new(vec![link("a")], 0);
        assert_eq!(fixed.capacity(), 1);
        assert_eq!(fixed.push(link("b")), None);
    }

    #[test]
    fn a_reader_sees_every_link_the_length_counts() {
        let links = Links::new(Vec::new(), 64);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for i in 0..64 {
                    links.push(link(&i.to_string())).unwrap();
                }
            });
            while links.len() < 64 {
                let n = links.len();
                assert!(links.iter().count() >= n);
                for i in 0..n {
                    assert_eq!(links[i].server, i.to_string());
                }
            }
        });
    }
}
