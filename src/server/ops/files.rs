//! Plain files and folders: `PUT /<name>` stores a file write-once, `PUT /<dir>/`
//! makes a folder (PYME's "make this folder"), `GET /<name>` sends a file, `GET
//! /<dir>/` lists a folder as PYME's `{"name": [type bits, size]}` (folders end in
//! `/`; type bits 1 folder, 2 has `metadata.json`, 4 has `events.json`), and `GET /`
//! or `GET //` (PYME's `listdir('/')`) lists the root.
//!
//! Inside an HDF5 file of PYME's, a GET reads the file's parts instead: `GET
//! /<file>.h5/` and `/<file>.h5/<part>` (`ops/h5.rs`), `GET /<file>.h5r/<Table>.npy`
//! (`ops/h5r.rs`); the HDF5 file itself is sent as any file.
//!
//! Names follow the one rule of `name.rs`: the query, if any, is judged with the name
//! and otherwise ignored (the file is stored under the path).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::name::{self, NameError};
use crate::server::body::{BodyError, Decoding};
use crate::server::connection::{Connection, Next, SPLICE_BODY_BYTES};
use crate::server::ops::{h5, h5r};
use crate::server::response::write_head;
use crate::server::router::Request;
use crate::server::storage::Stored;

/// What a file request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileTarget {
    /// A file, relative to the root.
    File(PathBuf),
    /// A folder (the path ended in `/`); empty for the root.
    Folder(PathBuf),
}

/// What `request` names, without judging it (the judge did).
fn target(request: &Request<'_>) -> FileTarget {
    let path = request.path;
    if path.is_empty() || path == "/" {
        return FileTarget::Folder(PathBuf::new());
    }
    match path.strip_suffix('/') {
        Some(folder) => FileTarget::Folder(folder.split('/').collect()),
        None => FileTarget::File(path.split('/').collect()),
    }
}

/// The name rule for files and folders: [`name::validate_stored`] of the path (a folder's
/// without its trailing `/`) with its query. The root is `/`, or `//`.
pub(crate) fn judge(request: &Request<'_>) -> Result<(), NameError> {
    let path = request.path;
    if path.is_empty() || path == "/" {
        return match request.query {
            None => Ok(()),
            // As a name: nothing before the query.
            Some(_) => Err(NameError::Empty),
        };
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    match request.query {
        Some(query) => name::validate_stored(&format!("{path}?{query}")),
        None => name::validate_stored(path),
    }
}

/// The answer to a plain write of a name a pyramid owns (409).
pub(crate) const PYRAMID_OWNS: &str =
    "The name is in a level folder of a pyramid; only __pyramid_* operations change its tiles.";

/// `PUT`: a file, or a folder.
pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let body_len = request.body_len;
    match target(request) {
        FileTarget::File(relative) => put_file(connection, request, &relative),
        // PYME's "make this folder"; data sent with it would be lost, so it is refused.
        FileTarget::Folder(_) if body_len > 0 => {
            connection.refuse(400, "A folder (a name ending in '/') cannot hold data.")
        }
        FileTarget::Folder(relative) => {
            match connection.shared().store.create_folder(&relative) {
                Ok(()) => connection.ok_empty(),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    connection.error(405, "A file of that name exists.")
                }
                Err(e) => connection.storage_error(&e, "The folder could not be made."),
            }
            Ok(())
        }
    }
}

/// Stores a new file, write-once. A taken name is found when the file is committed
/// (the move to its name fails), not checked first: that would cost a system call
/// per file.
fn put_file(connection: &mut Connection<'_>, request: &Request<'_>, relative: &Path) -> Next {
    let head = request.head;
    let body_len = request.body_len;
    let shared = connection.shared();
    let spare = connection.take_spare(head, body_len);
    let in_spare = spare.is_some();
    let begun = match spare {
        Some((spare, allocated)) => {
            shared
                .store
                .begin_in_spare(relative, spare, allocated, connection.folders())
        }
        None => shared.store.begin_file(relative, connection.folders()),
    };
    let mut pending = match begun {
        Ok(pending) => pending,
        Err(e) => {
            connection.skip_body(body_len)?;
            connection.storage_error(&e, "The file could not be created.");
            return Ok(());
        }
    };
    let received = if head.gzip || body_len < SPLICE_BODY_BYTES {
        let limit = shared.config.max_body_bytes;
        let mut sink = Decoding::new(pending, head.gzip, limit);
        let written = connection.read_body(body_len, &mut sink)?;
        sink.finish(written)
    } else {
        let written = connection.splice_body(body_len, &mut pending)?;
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
            if let Some(rate) = shared.config.store_bytes_per_s {
                std::thread::sleep(Duration::from_secs_f64(len as f64 / rate.max(1) as f64));
            }
            shared.files_stored.fetch_add(1, Ordering::Relaxed);
            if in_spare {
                shared.files_in_spares.fetch_add(1, Ordering::Relaxed);
            }
            shared.bytes_stored.fetch_add(len, Ordering::Relaxed);
            connection.ok_empty();
        }
        Ok((Stored::AlreadyExists, _)) => {
            connection.error(405, "The file exists; files are written once.")
        }
        Ok((Stored::Pyramid, _)) => connection.error(409, PYRAMID_OWNS),
        Err(e) => connection.body_error(&e, "The file could not be written."),
    }
    Ok(())
}

/// `GET` and `HEAD`: a folder's listing, or a file.
pub(crate) fn get(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let with_body = request.head.method == crate::server::request::Method::Get;
    match target(request) {
        // An `.h5` series is listed as a folder (`ops/h5.rs`).
        FileTarget::Folder(relative)
            if h5::get(connection, &relative, true, with_body).is_some() =>
        {
            Ok(())
        }
        // Parts of HDF5 files: `<file>.h5/<part>`, `<file>.h5r/<Table>.npy`.
        FileTarget::File(relative)
            if h5::get(connection, &relative, false, with_body)
                .or_else(|| h5r::get(connection, request, &relative, with_body))
                .is_some() =>
        {
            Ok(())
        }
        FileTarget::Folder(relative) => {
            match connection.shared().store.list_folder(&relative) {
                Ok(json) => connection.answer(200, "application/json", json.as_bytes(), with_body),
                Err(_) => connection.error(404, "No such folder."),
            }
            Ok(())
        }
        FileTarget::File(relative) => get_file(connection, request, &relative, with_body),
    }
}

fn get_file(
    connection: &mut Connection<'_>,
    request: &Request<'_>,
    relative: &Path,
    with_body: bool,
) -> Next {
    let full = match connection.shared().store.confined(relative) {
        Ok(full) => full,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            connection.error(403, "The name leads out of the storage root.");
            return Ok(());
        }
        Err(_) => {
            connection.error(404, "No such file.");
            return Ok(());
        }
    };
    let Ok(metadata) = std::fs::metadata(&full) else {
        connection.error(404, "No such file.");
        return Ok(());
    };
    if metadata.is_dir() {
        let path = request
            .head
            .target
            .split(['?', '#'])
            .next()
            .unwrap_or_default();
        let location = format!("Location: {path}/");
        write_head(connection.output(), 301, None, 0, &[&location], false);
        return Ok(());
    }
    if !metadata.is_file() {
        // A FIFO or a device: opening it could block, or never end.
        connection.error(404, "No such file.");
        return Ok(());
    }
    let Ok(file) = File::open(&full) else {
        connection.error(404, "The file cannot be read.");
        return Ok(());
    };
    let size = metadata.len();
    let content_type = Some("application/octet-stream");
    write_head(connection.output(), 200, content_type, size, &[], false);
    if with_body {
        connection.send_file(file, size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::request::{Method, RequestHead};

    fn parse(target_text: &str) -> Result<FileTarget, NameError> {
        let decoded = name::decode_request_target(target_text)?;
        let (path, query) = match decoded.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (decoded.as_str(), None),
        };
        let head = RequestHead {
            method: Method::Get,
            target: target_text.to_owned(),
            content_length: None,
            transfer_encoding: false,
            gzip: false,
            close: false,
            expect_continue: false,
        };
        let request = Request {
            head: &head,
            path,
            query,
            body_len: 0,
        };
        judge(&request)?;
        Ok(target(&request))
    }

    fn file(path: &str) -> Result<FileTarget, NameError> {
        Ok(FileTarget::File(PathBuf::from(path)))
    }

    fn folder(path: &str) -> Result<FileTarget, NameError> {
        Ok(FileTarget::Folder(PathBuf::from(path)))
    }

    #[test]
    fn names_files_and_folders() {
        assert_eq!(parse("/a/b.pzf"), file("a/b.pzf"));
        assert_eq!(parse("/a/b/?x=1"), folder("a/b"));
        assert_eq!(parse("/"), folder(""));
        assert_eq!(parse("//"), folder(""), "PYME's listdir('/') sends GET //");
        assert_eq!(parse("/a%C3%A9"), file("aé"));
        assert_eq!(parse("/a%2Fb"), file("a/b"));
        assert_eq!(parse("/a?x=1,2"), file("a"));
        assert!(parse("/?x=1").is_err());
        assert!(parse("///").is_err());
        assert!(parse("//a/").is_err());
        assert!(parse("/a?x=/").is_err());
    }
}
