//! A request body on its way to storage: gunzipped when it was sent with
//! `Content-Encoding: gzip`, counted, bounded, and with its failures told apart (a
//! corrupt body is the client's fault, 400; a body decoding to more than the limit
//! too, 413; a failing store is the server's, 500).
//!
//! Inflation is a stream: each piece of input is inflated through flate2's fixed
//! 32 KiB window into the writer as it comes, so a gzip bomb costs no memory, and it
//! stops at the limit (the writer refuses the byte past it).

use std::io::{self, Write};

use flate2::write::MultiGzDecoder;
use thiserror::Error;

/// Why a body did not reach storage.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("the gzip body is corrupt or cut short")]
    Corrupt,
    #[error("the body decodes to more than {0} bytes")]
    TooLarge(u64),
    #[error("storing the body failed: {0}")]
    Store(#[source] io::Error),
}

/// Writes a body, decoded if needed, into `W`.
pub struct Decoding<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Plain(Counting<W>),
    // Boxed: the decoder state is large and most bodies are not gzipped.
    Gzip(Box<MultiGzDecoder<Counting<W>>>),
}

impl<W: Write> Decoding<W> {
    /// Bytes past `limit` reaching `writer` are refused ([`BodyError::TooLarge`]).
    pub fn new(writer: W, gzip: bool, limit: u64) -> Self {
        let counting = Counting {
            writer,
            count: 0,
            limit,
            too_large: false,
            failed: false,
        };
        let inner = if gzip {
            Inner::Gzip(Box::new(MultiGzDecoder::new(counting)))
        } else {
            Inner::Plain(counting)
        };
        Decoding { inner }
    }

    /// Ends the body, given how writing it went; checks the end of a gzip stream.
    /// Returns the writer and how many bytes it received.
    pub fn finish(self, written: io::Result<()>) -> Result<(W, u64), BodyError> {
        if let Err(e) = written {
            return Err(self.classify(e));
        }
        let counting = match self.inner {
            Inner::Plain(counting) => counting,
            Inner::Gzip(mut decoder) => {
                if let Err(e) = decoder.try_finish() {
                    return Err(classify(decoder.get_ref(), e, true));
                }
                decoder.finish().map_err(BodyError::Store)?
            }
        };
        Ok((counting.writer, counting.count))
    }

    fn classify(&self, error: io::Error) -> BodyError {
        match &self.inner {
            Inner::Plain(counting) => classify(counting, error, false),
            Inner::Gzip(decoder) => classify(decoder.get_ref(), error, true),
        }
    }
}

/// Whose fault a failed write was: the limit's, the store's, or (only when decoding)
/// the body's.
fn classify<W: Write>(counting: &Counting<W>, error: io::Error, decoding: bool) -> BodyError {
    if counting.too_large {
        BodyError::TooLarge(counting.limit)
    } else if counting.failed || !decoding {
        BodyError::Store(error)
    } else {
        BodyError::Corrupt
    }
}

impl<W: Write> Write for Decoding<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            Inner::Gzip(w) => w.flush(),
        }
    }
}

/// Counts the bytes that reach the writer, refuses those past the limit, and
/// remembers whether the writer failed.
struct Counting<W: Write> {
    writer: W,
    count: u64,
    limit: u64,
    too_large: bool,
    failed: bool,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.count.saturating_add(buf.len() as u64) > self.limit {
            self.too_large = true;
            return Err(io::Error::other("the body is larger than the limit"));
        }
        match self.writer.write(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decodes_and_counts() {
        let mut sink = Decoding::new(Vec::new(), true, 5);
        let written = sink.write_all(&gzip(b"hello"));
        let (bytes, count) = sink.finish(written).unwrap();
        assert_eq!((bytes.as_slice(), count), (&b"hello"[..], 5));
    }

    #[test]
    fn cut_or_garbage_gzip_is_corrupt() {
        let full = gzip(&[3; 1000]);
        for body in [&full[..full.len() - 3], b"not gzip at all", b""] {
            let mut sink = Decoding::new(Vec::new(), true, 1 << 20);
            let written = sink.write_all(body);
            assert!(matches!(sink.finish(written), Err(BodyError::Corrupt)));
        }
    }

    /// A writer that only counts, so that the test measures the decoder alone.
    struct Discard(u64);

    impl Write for Discard {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_body_decoding_past_the_limit_is_too_large_and_stops_there() {
        // One member of 1 MiB of zeros, repeated: 64 MiB decoded from about 64 KiB.
        let member = gzip(&vec![0; 1 << 20]);
        let bomb = member.repeat(64);
        let limit = 3 << 20;
        let mut sink = Decoding::new(Discard(0), true, limit);
        let mut written = Ok(());
        for piece in bomb.chunks(4096) {
            written = sink.write_all(piece);
            if written.is_err() {
                break;
            }
        }
        match sink.finish(written) {
            Err(BodyError::TooLarge(l)) => assert_eq!(l, limit),
            other => panic!("{:?}", other.map(|(d, n)| (d.0, n))),
        }
        // Exactly at the limit is fine; plain bodies obey it too.
        let mut sink = Decoding::new(Vec::new(), true, 1 << 20);
        let written = sink.write_all(&member);
        assert_eq!(sink.finish(written).unwrap().1, 1 << 20);
        let mut plain = Decoding::new(Vec::new(), false, 3);
        let written = plain.write_all(b"four");
        assert!(matches!(plain.finish(written), Err(BodyError::TooLarge(3))));
    }
}
