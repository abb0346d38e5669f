//! A request body on its way to storage: gunzipped when it was sent with
//! `Content-Encoding: gzip`, counted, and with its failures told apart (a corrupt body
//! is the client's fault, 400; a failing store is the server's, 500).

use std::io::{self, Write};

use flate2::write::MultiGzDecoder;
use thiserror::Error;

/// Why a body did not reach storage.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("the gzip body is corrupt or cut short")]
    Corrupt,
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
    pub fn new(writer: W, gzip: bool) -> Self {
        let counting = Counting {
            writer,
            count: 0,
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
                    return Err(if decoder.get_ref().failed {
                        BodyError::Store(e)
                    } else {
                        BodyError::Corrupt
                    });
                }
                decoder.finish().map_err(BodyError::Store)?
            }
        };
        Ok((counting.writer, counting.count))
    }

    fn classify(&self, error: io::Error) -> BodyError {
        let store_failed = match &self.inner {
            Inner::Plain(counting) => counting.failed,
            Inner::Gzip(decoder) => decoder.get_ref().failed,
        };
        if store_failed || matches!(self.inner, Inner::Plain(_)) {
            BodyError::Store(error)
        } else {
            BodyError::Corrupt
        }
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

/// Counts the bytes that reach the writer and remembers whether it failed.
struct Counting<W: Write> {
    writer: W,
    count: u64,
    failed: bool,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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
        let mut sink = Decoding::new(Vec::new(), true);
        let written = sink.write_all(&gzip(b"hello"));
        let (bytes, count) = sink.finish(written).unwrap();
        assert_eq!((bytes.as_slice(), count), (&b"hello"[..], 5));
    }

    #[test]
    fn cut_or_garbage_gzip_is_corrupt() {
        let full = gzip(&[3; 1000]);
        for body in [&full[..full.len() - 3], b"not gzip at all", b""] {
            let mut sink = Decoding::new(Vec::new(), true);
            let written = sink.write_all(body);
            assert!(matches!(sink.finish(written), Err(BodyError::Corrupt)));
        }
    }
}
