//! The router: one table from a request's method and the first segment of its path
//! to the operation that answers it (`ROUTES`).
//!
//! A first segment starting with `__` names an operation (`__status`, `__glob`,
//! `__aggregate_txt`, ...); any other first segment names a file or a folder under the
//! root. A row may also ask for a query parameter (`MirrorSource` on a file PUT).
//! The first matching row wins. An `__` segment no row names is answered 404, a known
//! one asked with another method 405; a target that does not decode is refused 400.
//!
//! Each row has two functions of its operation (`ops/`):
//! - `judge`, pure, says whether the request names something the operation accepts
//!   (the name rule of `name.rs` for what it stores, its own query rule). A refusal
//!   is answered 400 and the connection closed, before any body byte is read, as for
//!   every name the client would refuse. [`judge`] runs it without a connection, for
//!   the tests that hold client and server to one rule (tests/server_names.rs).
//! - `handler` answers the request; it runs only after `judge` accepted it.
//!
//! What this module may not do: read or write the socket or the disk. It picks.

use super::connection::{Connection, Next};
use super::ops;
use super::request::{Method, RequestHead};
use crate::name::{self, NameError};

/// What an operation is given.
pub(crate) struct Request<'r> {
    pub head: &'r RequestHead,
    /// The request path, percent-decoded, without its leading `/` (a folder's ends
    /// with `/`; the root is empty, or `/` as PYME's `listdir('/')` sends it: `GET //`).
    pub path: &'r str,
    /// The query as sent, without the `?` (not percent-decoded).
    pub query: Option<&'r str>,
    /// The body's length (`Content-Length`; 0 for a GET without one).
    pub body_len: u64,
}

impl<'r> Request<'r> {
    /// The path after the first segment and its `/` (`x/y` for `__aggregate_txt/x/y`);
    /// `None` when the first segment is all there is.
    pub fn rest(&self) -> Option<&'r str> {
        self.path.split_once('/').map(|(_, rest)| rest)
    }

    /// The first value of the query parameter `key`, as sent (not decoded): all that
    /// follows `key=` up to the next `&`.
    pub fn query_value(&self, key: &str) -> Option<&'r str> {
        query_value(self.query?, key)
    }
}

/// The first value of `key` in a query (`a=1&key=2` -> `2`), not decoded.
pub(crate) fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        pair.strip_prefix(key)
            .and_then(|after| after.strip_prefix('='))
    })
}

/// Answers one request. It must consume exactly `body_len` bytes of body (read them,
/// or skip them with `Connection::skip_body`), or end the connection (`refuse`).
pub(crate) type Handler = fn(&mut Connection<'_>, &Request<'_>) -> Next;

/// Whether an operation accepts what a request names (see the module documentation);
/// the error is the reason, answered with 400.
pub(crate) type Judge = fn(&Request<'_>) -> Result<(), NameError>;

/// Which methods a row answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    /// GET and HEAD (a HEAD is answered as its GET, without the body).
    Get,
    Put,
}

/// Which first segments a row answers.
#[derive(Debug, Clone, Copy)]
enum First {
    /// Exactly this segment.
    Is(&'static str),
    /// Any segment starting with this (`__pyramid_`).
    StartsWith(&'static str),
    /// Any segment that does not name an operation: files and folders.
    File,
}

/// One row of the table.
struct Route {
    verb: Verb,
    first: First,
    /// Only when the query has this parameter.
    query_key: Option<&'static str>,
    /// The operation's name, for logs and tests.
    operation: &'static str,
    judge: Judge,
    handler: Handler,
}

/// Every operation of the data server. A new operation is one file in `ops/` and one
/// row here.
const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        first: First::Is("__status"),
        query_key: None,
        operation: "status",
        judge: ops::accept,
        handler: ops::status::get,
    },
    Route {
        verb: Verb::Get,
        first: First::Is("__metrics"),
        query_key: None,
        operation: "metrics",
        judge: ops::accept,
        handler: ops::metrics::get,
    },
    Route {
        verb: Verb::Get,
        first: First::Is("__glob"),
        query_key: None,
        operation: "glob",
        judge: ops::accept,
        handler: ops::glob::get,
    },
    Route {
        verb: Verb::Put,
        first: First::Is("__aggregate_txt"),
        query_key: None,
        operation: "aggregate_txt",
        judge: ops::aggregate_txt::judge,
        handler: ops::aggregate_txt::put,
    },
    Route {
        verb: Verb::Put,
        first: First::Is("__aggregate_h5r"),
        query_key: None,
        operation: "aggregate_h5r",
        judge: ops::h5r::judge,
        handler: ops::h5r::put,
    },
    Route {
        verb: Verb::Put,
        first: First::Is("__aggregate_h5"),
        query_key: None,
        operation: "aggregate_h5",
        judge: ops::h5::judge,
        handler: ops::h5::put,
    },
    Route {
        verb: Verb::Put,
        first: First::StartsWith("__pyramid_"),
        query_key: None,
        operation: "pyramid.put",
        judge: ops::judge_operand,
        handler: ops::pyramid::put,
    },
    Route {
        verb: Verb::Get,
        first: First::StartsWith("__pyramid_"),
        query_key: None,
        operation: "pyramid.get",
        judge: ops::judge_operand,
        handler: ops::pyramid::get,
    },
    Route {
        verb: Verb::Put,
        first: First::File,
        query_key: Some(ops::mirror::KEY),
        operation: "mirror",
        judge: ops::mirror::judge,
        handler: ops::mirror::put,
    },
    Route {
        verb: Verb::Put,
        first: First::File,
        query_key: None,
        operation: "files.put",
        judge: ops::files::judge,
        handler: ops::files::put,
    },
    Route {
        verb: Verb::Get,
        first: First::File,
        query_key: None,
        operation: "files.get",
        judge: ops::files::judge,
        handler: ops::files::get,
    },
];

/// Why no row answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unrouted {
    /// The target does not decode (400).
    BadTarget(NameError),
    /// A first segment starting with `__` that no operation has (404).
    UnknownOperation,
    /// A known operation asked with a method it does not take (405).
    WrongMethod,
    /// A method the server does not serve at all (405, connection closed).
    NoSuchMethod,
}

fn verb(method: Method) -> Option<Verb> {
    match method {
        Method::Get | Method::Head => Some(Verb::Get),
        Method::Put => Some(Verb::Put),
        Method::Other => None,
    }
}

/// Whether `first` names an operation rather than a file.
pub fn is_operation_segment(first: &str) -> bool {
    first.starts_with("__")
}

fn find(verb: Verb, path: &str, query: Option<&str>) -> Result<&'static Route, Unrouted> {
    let first = path.split('/').next().unwrap_or_default();
    let operation = is_operation_segment(first);
    let mut known = false;
    for route in ROUTES {
        let matches = match route.first {
            First::Is(segment) => first == segment,
            First::StartsWith(prefix) => first.starts_with(prefix),
            First::File => !operation,
        };
        if !matches {
            continue;
        }
        known = true;
        let query_ok = route
            .query_key
            .is_none_or(|key| query.is_some_and(|q| query_value(q, key).is_some()));
        if route.verb == verb && query_ok {
            return Ok(route);
        }
    }
    Err(if known || !operation {
        Unrouted::WrongMethod
    } else {
        Unrouted::UnknownOperation
    })
}

/// Splits a request target into its decoded path (without the leading `/`) and its
/// raw query.
fn split_target(target: &str) -> Result<(String, Option<String>), NameError> {
    let mut path = name::decode_request_target(target)?;
    // In place: a plain PUT (most requests) has no query and costs no copy.
    let query = path.find('?').map(|at| {
        let query = path[at + 1..].to_owned();
        path.truncate(at);
        query
    });
    Ok((path, query))
}

/// The operation that would answer `method` on `target`, if its judge accepts the
/// request (see the module documentation): what the server does with a name,
/// without a server. For tests.
pub fn judge(method: Method, target: &str) -> Result<&'static str, Unrouted> {
    let verb = verb(method).ok_or(Unrouted::NoSuchMethod)?;
    let (path, query) = split_target(target).map_err(Unrouted::BadTarget)?;
    let route = find(verb, &path, query.as_deref())?;
    let head = RequestHead {
        method,
        target: target.to_owned(),
        content_length: None,
        transfer_encoding: false,
        gzip: false,
        close: false,
        expect_continue: false,
    };
    let request = Request {
        head: &head,
        path: &path,
        query: query.as_deref(),
        body_len: 0,
    };
    (route.judge)(&request).map_err(Unrouted::BadTarget)?;
    Ok(route.operation)
}

/// Picks the operation for a request and runs it. The body is still unread; a GET's
/// is read past first.
pub(crate) fn dispatch(connection: &mut Connection<'_>, head: &RequestHead, body_len: u64) -> Next {
    let Some(verb) = verb(head.method) else {
        return connection.refuse(405, "Only GET, HEAD and PUT are served.");
    };
    let (path, query) = match split_target(&head.target) {
        Ok(split) => split,
        Err(reason) => {
            return connection.refuse(400, &format!("The name is not allowed: {reason}."))
        }
    };
    let route = match find(verb, &path, query.as_deref()) {
        Ok(route) => route,
        Err(unrouted) => {
            connection.skip_body(body_len)?;
            match unrouted {
                Unrouted::UnknownOperation => connection.error(404, "No such operation."),
                _ => connection.error(405, "This operation does not take this method."),
            }
            return Ok(());
        }
    };
    let request = Request {
        head,
        path: &path,
        query: query.as_deref(),
        body_len,
    };
    if let Err(reason) = (route.judge)(&request) {
        return connection.refuse(400, &format!("The name is not allowed: {reason}."));
    }
    if verb == Verb::Put {
        if head.content_length.is_none() {
            return connection.refuse(411, "A PUT needs a Content-Length.");
        }
        if head.expect_continue {
            connection.continue_body();
        }
    }
    if verb == Verb::Get {
        connection.skip_body(body_len)?;
    } else if connection.discards() {
        // Bandwidth testing (`--discard`): every PUT is read and dropped.
        connection.skip_body(body_len)?;
        connection.ok_empty();
        return Ok(());
    }
    (route.handler)(connection, &request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(target: &str) -> Result<&'static str, Unrouted> {
        judge(Method::Put, target)
    }

    fn get(target: &str) -> Result<&'static str, Unrouted> {
        judge(Method::Get, target)
    }

    #[test]
    fn routes_by_method_and_first_segment() {
        assert_eq!(put("/a/b.pzf"), Ok("files.put"));
        assert_eq!(get("/a/b/?x=1"), Ok("files.get"));
        assert_eq!(get("/"), Ok("files.get"));
        assert_eq!(get("//"), Ok("files.get"), "PYME's listdir('/')");
        assert_eq!(put("/a%C3%A9"), Ok("files.put"));
        assert_eq!(get("/__status"), Ok("status"));
        assert_eq!(get("/__glob?pattern=a/*.txt"), Ok("glob"));
        assert_eq!(
            get("/__glob?pattern=../*"),
            Ok("glob"),
            "glob judges its query itself"
        );
        assert_eq!(judge(Method::Head, "/__status"), Ok("status"));
        assert_eq!(get("/__metrics"), Ok("metrics"));
        assert_eq!(put("/__metrics"), Err(Unrouted::WrongMethod));
        assert_eq!(put("/__aggregate_txt/log/x.txt"), Ok("aggregate_txt"));
        assert_eq!(put("/__aggregate_h5r/a.h5r/t"), Ok("aggregate_h5r"));
        assert_eq!(put("/__pyramid_create/p?x=1"), Ok("pyramid.put"));
        assert_eq!(put("/__pyramid_anything/p"), Ok("pyramid.put"));
        assert_eq!(get("/__pyramid_finish/p"), Ok("pyramid.get"));
        assert_eq!(put("/__pyramid/p"), Err(Unrouted::UnknownOperation));
        assert_eq!(
            put("/d/f?MirrorSource=http://10.0.0.2:15348/d/f"),
            Ok("mirror")
        );
        assert_eq!(put("/d/f?x=1"), Ok("files.put"));
        assert_eq!(put("/__status"), Err(Unrouted::WrongMethod));
        assert_eq!(get("/__aggregate_txt/x"), Err(Unrouted::WrongMethod));
        assert_eq!(get("/__nothing"), Err(Unrouted::UnknownOperation));
        assert_eq!(put("/__nothing/x"), Err(Unrouted::UnknownOperation));
        assert_eq!(judge(Method::Other, "/a"), Err(Unrouted::NoSuchMethod));
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/a/%2E%2E",
            "//etc/passwd",
            "/%2Fetc",
            "/a/./b",
            "/a%00b",
            "/a%5c..",
            "/%zz",
            "/%4",
            "x",
            "/a%ff",
            "/a%20b",
            "/a//b",
            "/a?/../../x",
            "/a?x=1?y",
            "/?x=1",
            "/a?",
            "/CON",
            "/a/nul.txt",
            "/a./b",
            "/C:/x",
            "/a%3Ab",
            "/a/.pyme-part-1-2",
            "/?",
            "/__aggregate_txt/../x",
            "/__aggregate_txt/",
            "/__aggregate_txt",
            "/__pyramid_create/a//b",
        ] {
            assert!(
                matches!(put(bad), Err(Unrouted::BadTarget(_))),
                "{bad}: {:?}",
                put(bad)
            );
        }
    }

    #[test]
    fn query_values_are_found_by_key() {
        assert_eq!(query_value("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_value("ab=1", "a"), None);
        assert_eq!(query_value("a", "a"), None);
        assert_eq!(query_value("a=", "a"), Some(""));
        assert_eq!(
            query_value("MirrorSource=http://h:1/x", "MirrorSource"),
            Some("http://h:1/x")
        );
    }
}
