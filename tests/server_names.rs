//! One name rule for client and server: what `put` accepts, our data server stores
//! (never a 400, never a 500 for its length), and what `put` refuses, the server
//! refuses too.
//!
//! A first segment starting with `__` names an operation (`__status`, `__glob`,
//! `__metrics`, `__aggregate_*`, `__pyramid_*`), never a stored file: `put` refuses
//! such names except the operation prefixes it sends on purpose (`__aggregate_txt/`,
//! `__aggregate_h5r/`, `__aggregate_h5/`, `__pyramid_*/`, each followed by a stored
//! name), and the server hands those to the operation, which judges the name it acts
//! on by the same rule and parses its own query. Every other `__` name is refused by
//! both: the server answers 400, 404 (no such operation) or 405 (the operation does
//! not take a PUT), and stores nothing.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use pyme_streaming::name::{self, MAX_NAME_BYTES, MAX_SEGMENT_BYTES};
use pyme_streaming::server::request::Method;
use pyme_streaming::server::router::{judge, Unrouted};
use pyme_streaming::{Error, Stream, StreamerOptions};

mod server_support;

use server_support::{Client, TestServer};

/// The request target the client writes for `name`.
fn target(name: &str) -> String {
    let mut out = Vec::new();
    name::write_request_target(&mut out, name);
    String::from_utf8(out).unwrap()
}

/// Whether the server takes `target` as a name to store (a file, or the name an
/// operation acts on), not as a folder, and not refusing it.
fn server_takes_as_file(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    judge(Method::Put, target).is_ok() && !path.ends_with('/')
}

/// Names built from pieces that each break (or nearly break) one rule.
fn names() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[a-zA-Z0-9_\\-]{1,8}",
        "[a-zA-Z0-9_.\\-éß¹ :%\\\\#*]{0,6}",
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(String::new()),
        "(CON|nul|Aux|prn|COM[0-9¹]|lpt[1-9])(\\.[a-z]{1,3})?",
        "[a-z]{1,4}\\.",
        Just(".pyme-part-1-2".to_owned()),
        Just("__pyramid_update_tile".to_owned()),
        Just("__aggregate_h5".to_owned()),
        Just("__aggregate_txt".to_owned()),
        Just("__status".to_owned()),
        Just("s".repeat(MAX_SEGMENT_BYTES)),
        Just("s".repeat(MAX_SEGMENT_BYTES + 1)),
        Just("é".repeat(128)),
    ];
    let query = prop_oneof![
        Just(String::new()),
        "\\?[a-zA-Z0-9_.=&,\\-]{0,8}",
        "\\?[a-z0-9=&%/.?# é\\n]{0,8}",
    ];
    (
        proptest::option::of(Just("/")),
        proptest::collection::vec(segment, 1..6),
        proptest::option::of(Just("/")),
        query,
    )
        .prop_map(|(lead, segments, trail, query)| {
            format!(
                "{}{}{}{query}",
                lead.unwrap_or(""),
                segments.join("/"),
                trail.unwrap_or("")
            )
        })
}

/// Names that mostly pass: letters, digits, `_-.`, a few non-ASCII, a PYME query.
fn plausible_names() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[a-zA-Z0-9_\\-éß]{1,8}(\\.[a-z0-9]{1,4})?", 1..5),
        "(\\?[a-z]=[0-9]{1,3}(&[a-z]=[0-9]{1,3})?)?",
    )
        .prop_map(|(segments, query)| format!("{}{query}", segments.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The client's rule and the server's judgement of the same name agree.
    #[test]
    fn client_acceptance_is_server_acceptance(name in names()) {
        // The client writes targets only for names it accepts; for the others, compare
        // only where the target means the same name (a raw '%' or a non-ASCII query
        // would be read back as another name).
        let faithful = name::decode_request_target(&target(&name)).as_deref() == Ok(name.as_str());
        prop_assert!(faithful || name::validate(&name).is_err(), "{:?}", name);
        prop_assume!(faithful);
        let client = name::validate(&name).is_ok();
        // The client writes the target only for names it accepts; for the others,
        // the same encoding tells what any client sending them would get.
        let server = server_takes_as_file(&target(&name));
        prop_assert_eq!(client, server, "{:?}: client {:?}", name, name::validate(&name));
    }

    /// A folder target (`a/b/`) is served only when `a/b` is a valid stored name, or
    /// empty: `//` is the root, as PYME's `listdir('/')` asks for it.
    #[test]
    fn a_folder_is_served_when_its_name_is_valid(name in names()) {
        let folder_target = format!("{}/", target(&name));
        let is_folder = judge(Method::Get, &folder_target) == Ok("files.get");
        let valid_folder_name =
            name.is_empty() || (name::validate_stored(&name).is_ok() && !name.contains('?'));
        prop_assert_eq!(is_folder, valid_folder_name, "{:?}", name);
    }
}

/// What an operation answers a name the client accepts, sent with the body `x`.
/// Files and text appends store it (200), or find the name taken: written once (405),
/// or a folder of it a file stored by an earlier case (409; also `__aggregate_txt` to
/// an HDF5 name). The HDF5 aggregations need an `.h5r`/`.hdf` or `.h5` file in the
/// name and a body they can read, which `x` never is (400), or find the name taken
/// as above (405, 409); without the `hdf5` feature they are not built (501). A
/// pyramid operation judges its own folder, query and body (400), needs a pyramid
/// created there (404), and finds names taken as files do (409); a create stores (200).
fn expected_answers(operation: &str) -> &'static [u16] {
    match operation {
        "aggregate_h5r" | "aggregate_h5" if cfg!(feature = "hdf5") => &[400, 405, 409],
        "aggregate_h5r" | "aggregate_h5" => &[501],
        "pyramid.put" => &[200, 400, 404, 405, 409],
        "files.put" | "aggregate_txt" => &[200, 405, 409],
        other => panic!("{other}: a PUT of a name the client accepts went to {other}"),
    }
}

#[test]
fn what_the_client_accepts_the_server_stores_and_what_it_refuses_gets_400() {
    let server = TestServer::start();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    let mut client = server.connect();
    let (mut stored, mut refused) = (0, 0);
    for _ in 0..300 {
        let name = prop_oneof![names(), plausible_names()]
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let accepted = name::validate(&name).is_ok();
        let target = target(&name);
        if target.contains([' ', '\r', '\n']) {
            // Not one request target: the request line itself would be another.
            continue;
        }
        if !accepted && name::decode_request_target(&target).is_ok_and(|seen| seen != name) {
            // A refused name is never sent; its encoding may read as another name
            // (a query's `é` becomes `%C3%A9`, which a query may hold), so the
            // server's verdict on it says nothing about this name.
            continue;
        }
        let request = format!("PUT {target} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        client.send(request.as_bytes());
        let response = client.response();
        if accepted {
            // The name passed the router's judge (the one rule); what the operation
            // then answers is its own: each operation judges its own names.
            let operation = judge(Method::Put, &target).expect("an accepted name is routed");
            let expected: &[u16] = expected_answers(operation);
            assert!(
                expected.contains(&response.code),
                "{name:?} ({operation}): {} not in {expected:?}",
                response.code
            );
            // The operation's answer keeps the connection (the next case uses it).
            assert_ne!(response.header("Connection"), Some("close"), "{name:?}");
            if response.code == 200 {
                let stored = name::storage_name(&name);
                let stored = stored.strip_prefix("__aggregate_txt/").unwrap_or(stored);
                let stored_at = server.root().join(stored);
                assert!(stored_at.is_file(), "{name:?} not at {stored_at:?}");
            }
            stored += 1;
        } else if matches!(
            judge(Method::Put, &target),
            Err(Unrouted::UnknownOperation | Unrouted::WrongMethod)
        ) {
            // An operation's name that `put` may not send: no such operation, or
            // one that takes no PUT. Nothing is stored; the connection stays.
            assert!(
                matches!(response.code, 404 | 405),
                "{name:?}: {}",
                response.code
            );
            refused += 1;
        } else {
            assert_eq!(response.code, 400, "{name:?}");
            assert!(client.is_closed());
            client = server.connect();
            refused += 1;
        }
    }
    assert!(
        stored > 20 && refused > 20,
        "stored {stored}, refused {refused}"
    );
}

#[test]
fn the_longest_names_are_stored_not_answered_400_or_500() {
    let server = TestServer::start();
    let mut client = server.connect();
    // Five segments of 204 bytes: 1024 bytes; the non-ASCII one triples on the wire.
    let ascii = vec!["a".repeat(204); 5].join("/");
    let wide = vec!["é".repeat(102); 5].join("/");
    let segments = vec!["b".repeat(MAX_SEGMENT_BYTES); 4].join("/");
    for name in [&ascii, &wide, &segments] {
        assert!(name.len() <= MAX_NAME_BYTES, "{}", name.len());
        assert_eq!(name::validate(name), Ok(()));
        let request = format!(
            "PUT {} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            target(name)
        );
        client.send(request.as_bytes());
        assert_eq!(client.response().code, 200, "{} bytes", name.len());
        assert!(server.root().join(name).is_file());
    }
}

#[test]
fn put_refuses_what_the_server_would_refuse_before_sending() {
    let server = TestServer::start();
    let stream = Stream::connect(
        &server.server.local_addr().to_string(),
        &StreamerOptions::default(),
    )
    .unwrap();
    for bad in [
        "folder/",
        "a//b",
        "c/./x",
        "a/../b",
        "..",
        "a?/../../x",
        "CON.txt",
        "C:/x",
        "a\\b",
        "x.",
        &"a".repeat(4096),
    ] {
        match stream.put(bad, b"data") {
            Err(Error::InvalidName { .. }) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let mut client = Client::connect(server.server.local_addr());
    client.send(b"GET /folder/ HTTP/1.1\r\n\r\n");
    assert_eq!(client.response().code, 404, "nothing was made");
}

#[test]
fn a_first_segment_with_two_underscores_is_an_operation_never_a_file() {
    let server = TestServer::start();
    let stream = Stream::connect(
        &server.server.local_addr().to_string(),
        &StreamerOptions::default(),
    )
    .unwrap();
    for reserved in [
        "__status",
        "__glob",
        "__metrics",
        "__x/y",
        "__aggregate_txt",
        "__aggregate_txt/__status",
        "__pyramid_/p",
    ] {
        match stream.put(reserved, b"data") {
            Err(Error::InvalidName { .. }) => {}
            other => panic!("{reserved:?}: {other:?}"),
        }
    }
    let mut client = server.connect();
    for (target, code) in [
        ("/__status", 405),
        ("/__glob", 405),
        ("/__metrics", 405),
        ("/__x/y", 404),
        ("/__aggregate_txt/log.txt", 200),
    ] {
        let request = format!("PUT {target} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        client.send(request.as_bytes());
        assert_eq!(client.response().code, code, "{target}");
    }
    for refused in [
        "/__aggregate_txt/__status",
        "/__aggregate_txt",
        "/__pyramid_x/a//b",
    ] {
        let mut client = server.connect();
        let request = format!("PUT {refused} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
        client.send(request.as_bytes());
        assert_eq!(client.response().code, 400, "{refused}");
    }
    let mut stored: Vec<String> = std::fs::read_dir(server.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The server's own bookkeeping: the root's lock and the append's journal.
        .filter(|name| !name.starts_with(".pyme-"))
        .collect();
    stored.sort();
    assert_eq!(stored, ["log.txt"], "only the appended file");
    // The operation prefixes `put` sends on purpose reach their operation.
    stream.put("__aggregate_txt/log.txt", b"y").unwrap();
    stream
        .flush(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    assert_eq!(std::fs::read(server.root().join("log.txt")).unwrap(), b"xy");
}
