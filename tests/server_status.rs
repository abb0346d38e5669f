//! `GET /__status` answers PYME's keys with PYME's types (as `clusterIO.get_status`
//! and the cluster UI read them), and our own figures under their own keys.

mod server_support;

use server_support::{get, json, TestServer};

#[test]
fn status_has_pymes_keys_and_types() {
    let server = TestServer::with(|config| config.serverfilter = "test-cluster".into());
    let mut client = server.connect();
    client.send(&get("/__status"));
    let response = client.response();
    assert_eq!(response.code, 200);
    let status = json(&response.body);
    let port = server.server.local_addr().port();
    // `get_status` matches nodes by an integer port.
    assert_eq!(status["Port"], serde_json::json!(port));
    assert_eq!(status["IPAddress"], "127.0.0.1");
    assert_eq!(
        status["BindAddress"],
        serde_json::json!(["127.0.0.1", port])
    );
    assert_eq!(status["Protocol"], "1.1");
    assert_eq!(status["TestMode"], false);
    assert!(!status["ComputerName"].as_str().unwrap().is_empty());
    // As Python prints a timedelta: H:MM:SS, microseconds after a dot.
    let uptime = status["Uptime"].as_str().unwrap();
    let (hms, _) = uptime.split_once('.').unwrap_or((uptime, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    assert_eq!(parts.len(), 3, "{uptime}");
    assert!(parts.iter().all(|p| p.parse::<u64>().is_ok()), "{uptime}");
    // What the cluster UI computes.
    let disk = &status["Disk"];
    let free = disk["free"].as_u64().unwrap() as f64;
    let total = disk["total"].as_u64().unwrap() as f64;
    assert!(total > 0.0 && free <= total);
    assert!(disk["used"].as_u64().is_some());
    let memory = &status["MemUsage"];
    let percent = memory["percent"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&(100.0 - percent)));
    for key in ["total", "available", "used", "free"] {
        assert!(memory[key].as_u64().is_some(), "MemUsage.{key}");
    }
    let cpus = status["CPUUsage"].as_array().unwrap();
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let cores = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        assert_eq!(cpus.len(), cores, "one figure per core");
    }
    // The first answer's rates are zeros.
    assert!(cpus.iter().all(|c| c.as_f64() == Some(0.0)), "{cpus:?}");
    let network = status["Network"].as_object().unwrap();
    #[cfg(target_os = "linux")]
    assert!(network.contains_key("lo"));
    for rates in network.values() {
        assert_eq!(rates["send"].as_f64(), Some(0.0));
        assert_eq!(rates["recv"].as_f64(), Some(0.0));
    }
    // No GPU keys; our own figures under their own keys.
    assert!(status.get("GPUUsage").is_none() && status.get("GPUMem").is_none());
    assert_eq!(status["port"], serde_json::json!(port));
    assert_eq!(status["serverfilter"], "test-cluster");
}

#[cfg(target_os = "linux")]
#[test]
fn rates_are_since_the_previous_sample() {
    use server_support::put;
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(&get("/__status"));
    assert_eq!(client.response().code, 200);
    // 4 MiB over loopback between two samples, more than half a second apart.
    client.send(&put("moved", &vec![7u8; 4 << 20]));
    assert_eq!(client.response().code, 200);
    std::thread::sleep(pyme_streaming::server::ops::status::MIN_SAMPLE_INTERVAL * 2);
    client.send(&get("/__status"));
    let status = json(&client.response().body);
    let lo = &status["Network"]["lo"];
    assert!(lo["recv"].as_f64().unwrap() > 0.0, "{lo}");
    assert!(lo["send"].as_f64().unwrap() > 0.0, "{lo}");
    let cpus = status["CPUUsage"].as_array().unwrap();
    assert!(cpus
        .iter()
        .all(|c| (0.0..=100.0).contains(&c.as_f64().unwrap())));
}
