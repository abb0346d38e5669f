//! A storage node cut off without a word (power lost, a switch port dead): no reset,
//! no close, no error reaches the client, only silence, while its socket buffers are
//! full of a frame and the distribution keeps choosing it. Through real links between
//! network namespaces (`common/cluster_sim.rs`, root only, with iproute2 and nftables;
//! skipped visibly elsewhere (`common/skip.rs`), a failure when `CI` is set).
//!
//! What must hold: `bench` (the library behind it) ends by itself, every file is
//! acknowledged, every file is stored on a server that stayed up or before the cut,
//! and when the link comes back nothing of it is lost either. Not timed beyond a
//! generous deadline that tells "slow" from "blocked for ever".
#![cfg(target_os = "linux")]

#[path = "common/cluster_sim.rs"]
mod cluster_sim;
#[path = "common/skip.rs"]
mod skip;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cluster_sim::{LinkSpec, SimCluster};

/// The cluster, or `None` after a visible skip of `test`: no namespaces here,
/// or no `nft` to cut a link with.
fn cluster_or_skip(test: &str, links: &[LinkSpec]) -> Option<SimCluster> {
    if let Some(why) = SimCluster::unavailable() {
        skip::skip(test, &format!("network namespaces unavailable ({why})"));
        return None;
    }
    if !skip::require_tool(test, "nft", &["--version"]) {
        return None;
    }
    Some(SimCluster::start(links).expect("the simulated cluster starts"))
}

#[test]
fn a_node_cut_off_in_silence_mid_frame_loses_nothing_and_blocks_nothing() {
    let test = "a_node_cut_off_in_silence_mid_frame_loses_nothing_and_blocks_nothing";
    let Some(cluster) = cluster_or_skip(test, &vec![LinkSpec::rate("100mbit"); 4]) else {
        return;
    };
    // 1 MiB frames, round-robin (the distribution keeps choosing the silent node),
    // 2 s of silence declares a server failed.
    let count = 300;
    let mut bench = cluster
        .client_command(env!("CARGO_BIN_EXE_pyme-stream"))
        .args(["bench", "--servers", &cluster.addresses.join(",")])
        .args(["--prefix", "cut", "--count", &count.to_string()])
        .args(["--size", "1048576", "--timeout-ms", "2000", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.stored_in(1, "cut").len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        cluster.stored_in(1, "cut").len() >= 5,
        "server 1 got no file"
    );
    cluster.cut_link(1).unwrap();
    let before_cut = cluster.stored_in(1, "cut").len();

    // Ends by itself: 300 MiB over three 100 Mbit/s links is ~9 s; two minutes
    // tells a slow run from one blocked for ever.
    let deadline = Instant::now() + Duration::from_secs(120);
    while bench.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = bench.kill();
            let output = bench.wait_with_output().unwrap();
            panic!(
                "bench blocked after the cut: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = bench.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap();
    assert_eq!(json["acknowledged"], count, "{json}");
    assert_eq!(json["failed"], 0, "{json}");
    assert!(json["rerouted"].as_u64().unwrap() > 0, "{json}");
    // Every file is somewhere (the cut node may still store what its socket had
    // received: the client never heard of it and sent it elsewhere too).
    assert_eq!(cluster.distinct_in("cut").len(), count);
    eprintln!(
        "server 1 held {before_cut} files at the cut, {} at the end; {json}",
        cluster.stored_in(1, "cut").len()
    );

    // The link back: a new run uses the node again and loses nothing.
    cluster.mend_link(1).unwrap();
    let output = cluster
        .client_command(env!("CARGO_BIN_EXE_pyme-stream"))
        .args(["bench", "--servers", &cluster.addresses.join(",")])
        .args(["--prefix", "back", "--count", "40", "--size", "65536"])
        .args(["--timeout-ms", "2000", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(cluster.distinct_in("back").len(), 40);
    assert_eq!(
        cluster.stored_in(1, "back").len(),
        10,
        "round-robin uses it again"
    );
}
