//! The distributed pyramid on our data server (`src/server/pyramid.rs`):
//! `__pyramid_create`, `__pyramid_update_tile` and `__pyramid_finish` over HTTP,
//! the tiles read back, a restart in the middle, the refusals; and PYME's own
//! server against ours for the same requests (tests/interop/pyramid_vs_pyme.py).

mod common;
mod server_support;

use std::path::{Path, PathBuf};

use pyme_streaming::pzf::{self, Compression, DataFormat, EncodeParams};
use pyme_streaming::server::{DataServer, ServerConfig};
use server_support::{get, put, Client, Response, TestServer};

const DIR: &str = "pyr/run";
const CREATE: &[u8] = br#"{"pyramid_tile_size": 16, "chunk_shape": [4, 4, 1]}"#;

fn f32_tile(rows: u32, cols: u32, value: impl Fn(u32, u32) -> f32) -> Vec<u8> {
    let mut pixels = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            pixels.extend_from_slice(&value(r, c).to_le_bytes());
        }
    }
    let mut params = EncodeParams::new(DataFormat::F32, rows, cols);
    params.compression = Compression::Raw;
    let mut out = Vec::new();
    pzf::encode(&params, &pixels, &mut out).unwrap();
    out
}

fn ask(client: &mut Client, name: &str, body: &[u8]) -> Response {
    client.send(&put(name, body));
    client.response()
}

fn tile_query(x: u32, y: u32, offsets: (u32, u32, u32, u32), frame: (u32, u32)) -> String {
    let (tox, toy, fox, foy) = offsets;
    format!(
        "__pyramid_update_tile/{DIR}?x={x}&y={y}&tox={tox}&toy={toy}&fox={fox}&foy={foy}&fsx={}&fsy={}",
        frame.0, frame.1
    )
}

/// The requests of a 40x40 frame at (4, 6) cut into 16-pixel tiles, as PYME's
/// `update_base_tiles_from_frame` cuts it (tiles 0..=2 both ways), pixel value
/// `r + 100 c` of the frame (plus `bias`).
fn frame_requests(bias: f32) -> Vec<(String, Vec<u8>)> {
    let (x, y, rows, cols, size) = (4u32, 6u32, 40u32, 40u32, 16u32);
    let mut out = Vec::new();
    for tx in x / size..=(x + rows) / size {
        for ty in y / size..=(y + cols) / size {
            let xs = (tx * size).saturating_sub(x);
            let xe = ((tx + 1) * size - x).min(rows);
            let ys = (ty * size).saturating_sub(y);
            let ye = ((ty + 1) * size - y).min(cols);
            let (xst, yst) = (x.saturating_sub(tx * size), y.saturating_sub(ty * size));
            let body = f32_tile(xe - xs, ye - ys, |r, c| {
                (xs + r) as f32 + 100.0 * (ys + c) as f32 + bias
            });
            out.push((tile_query(tx, ty, (xst, yst, xs, ys), (rows, cols)), body));
        }
    }
    out
}

fn read_tile(root: &Path, level: usize, x: u32, y: u32) -> Option<Vec<f32>> {
    let bytes = std::fs::read(
        root.join(DIR)
            .join(format!("{level}/000/{x:03}/{y:03}_img.pzf")),
    )
    .ok()?;
    let (header, pixels) = pzf::decode(&bytes).unwrap();
    assert_eq!(
        (header.width, header.height, header.format),
        (16, 16, DataFormat::F32)
    );
    Some(
        pixels
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
    )
}

/// Every file under the pyramid's folder, relative, with its bytes.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let folder = root.join(DIR);
    common::files_under(&folder)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (common::relative(&folder, &path), bytes)
        })
        .collect()
}

fn run_all(client: &mut Client, requests: &[(String, Vec<u8>)]) {
    for (name, body) in requests {
        let answer = ask(client, name, body);
        assert_eq!(
            answer.code,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
}

#[test]
fn create_update_finish_and_read_back() {
    let server = TestServer::start();
    let mut client = server.connect();
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        200
    );
    // The same create again (a retry) keeps the pyramid; other parameters do not.
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        200
    );
    let other = br#"{"pyramid_tile_size": 32, "chunk_shape": [4, 4, 1]}"#;
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), other).code,
        409
    );
    run_all(&mut client, &frame_requests(0.0));
    // The state is hidden from listings.
    client.send(&get(&format!("/{DIR}/")));
    let listing = client.response();
    assert_eq!(listing.code, 200);
    assert_eq!(server_support::json(&listing.body), serde_json::json!({}));
    assert_eq!(
        ask(&mut client, &format!("__pyramid_finish/{DIR}"), b"").code,
        200
    );

    let root = server.root();
    // Base tiles 0..=2 both ways; level 1 has 2x2 tiles, level 2 one (4x4 chunk: at
    // most 2 levels, and the build stops at a level of one tile).
    for x in 0..=2 {
        for y in 0..=2 {
            assert!(read_tile(root, 0, x, y).is_some(), "base tile {x},{y}");
        }
    }
    for (x, y) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert!(read_tile(root, 1, x, y).is_some(), "level 1 tile {x},{y}");
    }
    assert!(read_tile(root, 2, 0, 0).is_some());
    assert!(read_tile(root, 3, 0, 0).is_none());
    // One frame only: where its weight is not 0, each pixel is the frame's own value
    // (sum of w * v over sum of w). Frame pixel (r, c) is tile (1, 1) pixel
    // (r + 4 - 16, c + 6 - 16); ramps are 10 pixels, so (20, 20) has weight 1.
    let base = read_tile(root, 0, 1, 1).unwrap();
    let (r, c) = (20u32, 20u32);
    let expected = r as f32 + 100.0 * c as f32;
    assert_eq!(base[((r + 4 - 16) * 16 + (c + 6 - 16)) as usize], expected);
    // Frame corner (0, 0) has weight 0: the pixel is 0, not a division by zero.
    let corner = read_tile(root, 0, 0, 0).unwrap();
    assert_eq!(corner[4 * 16 + 6], 0.0);
    // Level 1 is the 2x2 mean of level 0, quarter by quarter: tile (0, 0) of level 1
    // holds base tile (1, 1) in its SE quarter.
    let up = read_tile(root, 1, 0, 0).unwrap();
    let mean = (base[0] + base[16] + base[17] + base[1]) / 4.0;
    assert!((up[8 * 16 + 8] - mean).abs() <= mean.abs() * 1e-6);
    // The working state is gone; a GET of an operation is 404.
    assert!(!root.join(DIR).join(".pyme-pyramid/tiles").exists());
    client.send(&get(&format!("/__pyramid_finish/{DIR}")));
    assert_eq!(client.response().code, 404);
    // Finished: no more tiles, a second finish is harmless, a create is refused.
    let (name, body) = &frame_requests(0.0)[0];
    assert_eq!(ask(&mut client, name, body).code, 409);
    assert_eq!(
        ask(&mut client, &format!("__pyramid_finish/{DIR}"), b"").code,
        200
    );
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        409
    );
}

/// Starts a server on `root` (in-process), as a restarted node would.
fn start_on(root: &Path) -> DataServer {
    DataServer::start(ServerConfig {
        root: root.to_owned(),
        ..ServerConfig::default()
    })
    .unwrap()
}

#[test]
fn a_restart_in_the_middle_changes_nothing() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (straight, restarted): (PathBuf, PathBuf) = (dirs[0].path().into(), dirs[1].path().into());
    let first = frame_requests(0.0);
    let second = frame_requests(7.5);
    let create = (format!("__pyramid_create/{DIR}"), CREATE.to_vec());
    let finish = (format!("__pyramid_finish/{DIR}"), Vec::new());

    let server = start_on(&straight);
    let mut client = Client::connect(server.local_addr());
    run_all(&mut client, std::slice::from_ref(&create));
    run_all(&mut client, &first);
    run_all(&mut client, &second);
    run_all(&mut client, std::slice::from_ref(&finish));
    server.shutdown();

    let server = start_on(&restarted);
    let mut client = Client::connect(server.local_addr());
    run_all(&mut client, std::slice::from_ref(&create));
    run_all(&mut client, &first);
    drop(client);
    server.shutdown();
    let server = start_on(&restarted);
    let mut client = Client::connect(server.local_addr());
    run_all(&mut client, &second);
    run_all(&mut client, std::slice::from_ref(&finish));
    server.shutdown();

    let (a, b) = (files(&straight), files(&restarted));
    assert!(a.len() > 9, "{} files", a.len());
    assert_eq!(
        a.iter().map(|f| &f.0).collect::<Vec<_>>(),
        b.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(a == b, "the same names, different bytes");
}

#[test]
fn unknown_pyramids_and_operations_are_404() {
    let server = TestServer::start();
    let mut client = server.connect();
    let (name, body) = &frame_requests(0.0)[0];
    assert_eq!(ask(&mut client, name, body).code, 404);
    assert_eq!(
        ask(&mut client, &format!("__pyramid_finish/{DIR}"), b"").code,
        404
    );
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        200
    );
    for op in [
        "__pyramid_delete",
        "__pyramidx",
        "__pyramid_createx",
        "__pyramid",
    ] {
        let answer = ask(&mut client, &format!("{op}/{DIR}"), CREATE);
        assert_eq!(answer.code, 404, "{op}");
        client.send(&get(&format!("/{op}/{DIR}")));
        assert_eq!(client.response().code, 404, "GET {op}");
    }
    // Another folder has no pyramid, even under this one.
    let elsewhere = name.replace(DIR, &format!("{DIR}/sub"));
    assert_eq!(ask(&mut client, &elsewhere, body).code, 404);
    assert_eq!(ask(&mut client, "__pyramid_create", CREATE).code, 400);
    // Nothing stored beside the pyramid's folder.
    let stored = common::files_under(server.root());
    assert!(
        stored
            .iter()
            .all(|p| common::relative(server.root(), p)
                .starts_with(&format!("{DIR}/.pyme-pyramid/"))),
        "{stored:?}"
    );
}

#[test]
fn malformed_tiles_and_bad_queries_are_400_and_change_nothing() {
    let server = TestServer::start();
    let mut client = server.connect();
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        200
    );
    let requests = frame_requests(0.0);
    run_all(&mut client, &requests[..3]);
    let before = files(server.root());
    assert!(!before.is_empty());
    let (good_name, good_body) = &requests[4];
    let mut truncated = good_body.clone();
    truncated.truncate(good_body.len() - 3);
    let mut bad_magic = good_body.clone();
    bad_magic[0] = b'X';
    let q = |rest: &str| format!("__pyramid_update_tile/{DIR}?{rest}");
    let bad: Vec<(String, Vec<u8>)> = vec![
        (good_name.clone(), b"not a pzf file".to_vec()),
        (good_name.clone(), truncated),
        (good_name.clone(), bad_magic),
        (good_name.clone(), Vec::new()),
        // A chunk that does not fit in its tile, or in its frame.
        (
            q("x=0&y=0&tox=10&toy=0&fox=0&foy=0&fsx=40&fsy=40"),
            f32_tile(8, 8, |_, _| 1.0),
        ),
        (
            q("x=0&y=0&tox=0&toy=0&fox=35&foy=0&fsx=40&fsy=40"),
            f32_tile(8, 8, |_, _| 1.0),
        ),
        // A chunk larger than a tile (refused from its header).
        (q("x=0&y=0&fsx=40&fsy=40"), f32_tile(17, 2, |_, _| 1.0)),
        // Frames PYME's weights are not defined for.
        (q("x=0&y=0&fsx=3&fsy=40"), f32_tile(2, 2, |_, _| 1.0)),
        (q("x=0&y=0&fsx=400&fsy=50"), f32_tile(2, 2, |_, _| 1.0)),
        // Bad query values.
        (q("x=-1&y=0&fsx=40&fsy=40"), good_body.clone()),
        (q("x=0&y=0&fsx=40"), good_body.clone()),
        (q("x=0&y=zero&fsx=40&fsy=40"), good_body.clone()),
        (q("x=0&y=0&fsx=40&fsy=40&x=1"), good_body.clone()),
        (q("x=0&y=0&fsx=40&fsy=40&weights=none"), good_body.clone()),
        (q("x=0&y=0&fsx=40&fsy=40&colour=red"), good_body.clone()),
        (q("x=0&y=0&tox=1.5&fsx=40&fsy=40"), good_body.clone()),
        (q("x=0&y=0&fsx=40&fsy=99999999999"), good_body.clone()),
    ];
    for (name, body) in &bad {
        let answer = ask(&mut client, name, body);
        assert_eq!(answer.code, 400, "{name} answered {}", answer.code);
    }
    // Bad create bodies.
    for body in [
        &b"{"[..],
        br#"{"pyramid_tile_size": 15}"#,
        br#"{"chunk_shape": [0, 1]}"#,
    ] {
        assert_eq!(ask(&mut client, "__pyramid_create/other", body).code, 400);
    }
    assert!(!server.root().join("other").exists());
    assert!(
        files(server.root()) == before,
        "a refused request changed the pyramid"
    );
    // And the connection still works.
    assert_eq!(ask(&mut client, good_name, good_body).code, 200);
}

// ---- PYME's server against ours -------------------------------------------------

/// A Python that has PYME, SciPy (PYME's levels import it) and ujson (PYME's server
/// does): `$PYME_PYTHON`, else the venv .ci/run makes, else `python3`.
fn pyme_python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python-venv/bin/python");
    let candidates: Vec<PathBuf> = match std::env::var_os("PYME_PYTHON") {
        Some(python) => vec![python.into()],
        None => vec![venv, "python3".into()],
    };
    let probe = "import importlib.util as u, sys; \
                 sys.exit(0 if all(u.find_spec(m) for m in ('PYME', 'scipy', 'ujson', 'numpy', 'requests')) else 1)";
    for python in &candidates {
        let ok = std::process::Command::new(python)
            .args(["-c", probe])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(python.clone());
        }
    }
    Err(format!(
        "no Python with PYME (python-microscopy), scipy and ujson among {candidates:?} (set PYME_PYTHON; .ci/run installs them)"
    ))
}

/// A network namespace with only lo up, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn create() -> Result<Namespace, String> {
        let name = format!("pyme-pyr-{}", std::process::id());
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    if o.status.success() {
                        Ok(())
                    } else {
                        Err(String::from_utf8_lossy(&o.stderr).into_owned())
                    }
                })
        };
        run(&["netns", "add", &name])?;
        let namespace = Namespace(name);
        run(&[
            "netns",
            "exec",
            &namespace.0,
            "ip",
            "link",
            "set",
            "lo",
            "up",
        ])?;
        Ok(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn pyme_reads_the_same_pyramid_from_ours_as_from_pymes_server() {
    const TEST: &str = "pyme_reads_the_same_pyramid_from_ours_as_from_pymes_server";
    let python = match pyme_python() {
        Ok(python) => python,
        Err(reason) => return common::skip::skip(TEST, &reason),
    };
    if let Some(reason) = common::netns::unavailable() {
        return common::skip::skip(TEST, &format!("PYME runs in a network namespace: {reason}"));
    }
    let namespace = Namespace::create().expect("namespace");
    let work = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyramid_vs_pyme.py");
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &namespace.0])
        .arg(&python)
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_pyme-stream"))
        .arg(work.path())
        // PYME writes its configuration under HOME and its registry in the temp folder.
        .env("HOME", work.path())
        .env("TMPDIR", work.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout.lines().last().unwrap_or_default();
    assert!(
        output.status.success(),
        "PYME's server and ours differ: {report}\n--- stderr (tail)\n{}",
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let report: serde_json::Value = serde_json::from_str(report).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]));
    assert!(report["files"].as_u64().unwrap() >= 30, "{report}");
    assert_eq!(report["tiles_read"], report["files"]);
    assert_eq!(report["levels"], serde_json::json!([0, 1, 2]));
}

#[test]
fn hostile_queries_and_bodies_never_panic() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let handle = pyme_streaming::server::pyramid::handle;
    assert_eq!(
        handle(&root, "__pyramid_create", "p", None, CREATE, false)
            .unwrap()
            .code,
        200
    );
    let good = f32_tile(4, 4, |r, c| (r * c) as f32);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let query = "(x|y|tox|toy|fox|foy|fsx|fsy|weights|z)=[0-9a-z.\\-]{0,12}(&(x|y|tox|toy|fox|foy|fsx|fsy)=[0-9]{0,11}){0,9}";
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        // A real tile with a few bytes changed (the header included).
        proptest::collection::vec((0..good.len(), any::<u8>()), 1..6).prop_map(move |edits| {
            let mut body = good.clone();
            for (at, byte) in edits {
                body[at] = byte;
            }
            body
        }),
    ];
    for _ in 0..400 {
        let q = query.new_tree(&mut runner).unwrap().current();
        let b = body.new_tree(&mut runner).unwrap().current();
        let answer = handle(&root, "__pyramid_update_tile", "p", Some(&q), &b, false).unwrap();
        assert!(matches!(answer.code, 200 | 400), "{q}: {}", answer.code);
    }
    assert_eq!(
        handle(&root, "__pyramid_finish", "p", None, b"", false)
            .unwrap()
            .code,
        200
    );
}

/// Who may change a pyramid's files (found by a review): tiles were written 0644 and
/// renamed over whatever had the name, so an `__aggregate_txt` appended to a finished
/// tile, and a finish replaced a write-once file a plain PUT had stored under a
/// tile's name. Now a pyramid's level folders are its own: a plain PUT or an
/// append there is 409 before and after the finish, and a create is 409 where a
/// level folder already holds files (so a finish never replaces a file it did not
/// make). Names outside level folders, and level-like folders without a pyramid,
/// are plain files as before.
#[test]
fn a_pyramids_tiles_change_only_by_pyramid_operations() {
    let server = TestServer::start();
    let root = server.root().to_owned();
    let mut client = server.connect();
    let tile = |level: usize, x: u32, y: u32| format!("{DIR}/{level}/000/{x:03}/{y:03}_img.pzf");
    assert_eq!(
        ask(&mut client, &format!("__pyramid_create/{DIR}"), CREATE).code,
        200
    );
    run_all(&mut client, &frame_requests(0.0));
    // Before the finish: a PUT and an append of names the finish will write.
    let put_before = ask(&mut client, &tile(0, 0, 0), b"not a tile");
    assert_eq!(
        put_before.code,
        409,
        "{}",
        String::from_utf8_lossy(&put_before.body)
    );
    let append_before = ask(
        &mut client,
        &format!("__aggregate_txt/{}", tile(1, 0, 0)),
        b"log\n",
    );
    assert_eq!(append_before.code, 409);
    assert_eq!(
        ask(&mut client, &format!("__pyramid_finish/{DIR}"), b"").code,
        200
    );
    let finished = files(&root);
    assert!(read_tile(&root, 0, 0, 0).is_some() && read_tile(&root, 1, 0, 0).is_some());
    // After the finish: the tiles can be neither appended to nor replaced.
    for name in [tile(0, 0, 0), tile(0, 2, 2), tile(1, 0, 0)] {
        assert_eq!(
            ask(&mut client, &format!("__aggregate_txt/{name}"), b"x\n").code,
            409
        );
        assert_eq!(ask(&mut client, &name, b"x").code, 409);
    }
    // Every level this node builds (chunk 4x4: the base and levels 1 and 2) is the
    // pyramid's; the levels above are PYME's own to write with plain PUTs
    // (`ClusterPZFTileIO` of its microscope-side `update_pyramid`), as with PYME's server.
    assert_eq!(ask(&mut client, &format!("{DIR}/2/new"), b"x").code, 409);
    for level in [3, 5, 12, 99999999999999999999u128] {
        let name = format!("{DIR}/{level}/000/000/000_img.pzf");
        assert_eq!(ask(&mut client, &name, b"pyme").code, 200, "{name}");
        std::fs::remove_file(root.join(&name)).unwrap();
    }
    // HDF5 aggregation too (501 in a build without HDF5).
    let h5r = format!("__aggregate_h5r/{DIR}/0/r.h5r/FitResults");
    let pickle = include_bytes!("data/record_array.pickle");
    let expected = if cfg!(feature = "hdf5") { 409 } else { 501 };
    assert_eq!(ask(&mut client, &h5r, pickle).code, expected);
    assert_eq!(files(&root), finished, "a tile changed");
    // Outside the level folders, and where no pyramid was created: plain files.
    assert_eq!(
        ask(&mut client, &format!("{DIR}/notes.txt"), b"n").code,
        200
    );
    assert_eq!(
        ask(&mut client, "plain/0/000/000/000_img.pzf", b"p").code,
        200
    );
    assert_eq!(
        ask(&mut client, "__aggregate_txt/plain/1/log.txt", b"l\n").code,
        200
    );
    // A create where level folders hold a write-once file or a log: refused, and
    // nothing there changes.
    let create = |client: &mut Client| ask(client, "__pyramid_create/plain", CREATE).code;
    assert_eq!(create(&mut client), 409);
    assert_eq!(
        std::fs::read(root.join("plain/0/000/000/000_img.pzf")).unwrap(),
        b"p"
    );
    assert_eq!(std::fs::read(root.join("plain/1/log.txt")).unwrap(), b"l\n");
    assert!(!root.join("plain/.pyme-pyramid").exists());
    // Files in levels above what the pyramid builds (PYME's) do not refuse a create.
    assert_eq!(
        ask(&mut client, "upper/3/000/000/000_img.pzf", b"u").code,
        200
    );
    assert_eq!(ask(&mut client, "__pyramid_create/upper", CREATE).code, 200);
    // Empty level folders (a refused PUT may leave one) do not count.
    assert_eq!(ask(&mut client, "emptied/0/000/x", b"e").code, 200);
    std::fs::remove_file(root.join("emptied/0/000/x")).unwrap();
    assert_eq!(
        ask(&mut client, "__pyramid_create/emptied", CREATE).code,
        200
    );
}
