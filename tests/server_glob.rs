//! `GET /__glob?pattern=<glob>` and the listings PYME's `clusterIO` asks for
//! (`GET //`, `GET /<dir>/`), over HTTP as PYME's client sends them.

mod server_support;

use server_support::{get, json, put, TestServer};

fn store(server: &TestServer, names: &[&str]) {
    let mut client = server.connect();
    for name in names {
        client.send(&put(name, b"data"));
        assert_eq!(client.response().code, 200, "{name}");
    }
}

#[test]
fn glob_answers_matching_paths_relative_to_the_root() {
    let server = TestServer::start();
    store(
        &server,
        &[
            "dir/a.txt",
            "dir/b.txt",
            "dir/c.dat",
            "dir/sub/d.txt",
            "e.txt",
        ],
    );
    let mut client = server.connect();
    // The glob raw in the query, `/` and `*` unencoded, as PYME sends it.
    client.send(&get("/__glob?pattern=dir/*.txt"));
    let response = client.response();
    assert_eq!(response.code, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        json(&response.body),
        serde_json::json!(["dir/a.txt", "dir/b.txt"])
    );
    // `**` is not recursive.
    client.send(&get("/__glob?pattern=**/*.txt"));
    assert_eq!(
        json(&client.response().body),
        serde_json::json!(["dir/a.txt", "dir/b.txt"])
    );
    client.send(&get("/__glob?pattern=dir%2Fsub%2F*"));
    assert_eq!(
        json(&client.response().body),
        serde_json::json!(["dir/sub/d.txt"])
    );
    client.send(&get("/__glob?pattern=dir/[ab].txt"));
    assert_eq!(
        json(&client.response().body),
        serde_json::json!(["dir/a.txt", "dir/b.txt"])
    );
    client.send(&get("/__glob?pattern=dir/[!a]?txt"));
    assert_eq!(
        json(&client.response().body),
        serde_json::json!(["dir/b.txt"])
    );
    client.send(&get("/__glob?pattern=*/"));
    assert_eq!(json(&client.response().body), serde_json::json!(["dir/"]));
    client.send(&get("/__glob?pattern=nothing/*"));
    assert_eq!(json(&client.response().body), serde_json::json!([]));
    // The server's temporary and hidden files never match.
    std::fs::write(server.root().join("dir/.pyme-part-1-1"), b"").unwrap();
    client.send(&get("/__glob?pattern=dir/.*"));
    assert_eq!(json(&client.response().body), serde_json::json!([]));
}

#[test]
fn escaping_or_oversized_globs_are_refused_and_the_connection_goes_on() {
    let server = TestServer::start();
    let names: Vec<String> = (0..10_001).map(|i| format!("many/f{i:05}")).collect();
    std::fs::create_dir_all(server.root().join("many")).unwrap();
    for name in &names {
        std::fs::write(server.root().join(name), b"").unwrap();
    }
    let mut client = server.connect();
    for bad in [
        "/__glob?pattern=../*",
        "/__glob?pattern=/etc/*",
        "/__glob?pattern=many/../../*",
        "/__glob?pattern=%2E%2E/*",
        "/__glob?pattern=",
        "/__glob",
        "/__glob?x=1",
    ] {
        client.send(&get(bad));
        let response = client.response();
        assert_eq!(response.code, 400, "{bad}");
    }
    client.send(&get("/__glob?pattern=many/*"));
    let response = client.response();
    assert_eq!(response.code, 413);
    let body = String::from_utf8_lossy(&response.body);
    assert!(body.contains("More than 10000 paths match"), "{body}");
    client.send(&get("/__glob?pattern=many/f0000*"));
    assert_eq!(json(&client.response().body).as_array().unwrap().len(), 10);
}

#[test]
fn listings_are_pymes_with_the_root_as_listdir_asks_for_it() {
    let server = TestServer::start();
    store(
        &server,
        &[
            "series/metadata.json",
            "series/events.json",
            "series/frame00000.pzf",
            "half/metadata.json",
            "plain/x",
            "top.txt",
        ],
    );
    let mut client = server.connect();
    // `clusterIO.listdir('/')` and `walk('/')` send `GET //`.
    for root in ["//", "/"] {
        client.send(&get(root));
        let response = client.response();
        assert_eq!(response.code, 200, "{root}");
        assert_eq!(
            json(&response.body),
            serde_json::json!({
                "series/": [7, 3],
                "half/": [3, 1],
                "plain/": [1, 1],
                "top.txt": [0, 4],
            }),
            "{root}"
        );
    }
    client.send(&get("/series/"));
    let listing = json(&client.response().body);
    assert_eq!(listing["frame00000.pzf"], serde_json::json!([0, 4]));
    assert_eq!(listing.as_object().unwrap().len(), 3);
}
