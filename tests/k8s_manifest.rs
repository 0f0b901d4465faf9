//! The Kubernetes manifest's numbers agree with each other and with the
//! example, and the example accepts them (and sees no kill-budget problem).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Service;
use yaml_rust2::{Yaml, YamlLoader};

struct Manifest {
    grace_ms: u64,
    args: Vec<String>,
    budget_env_ms: Option<u64>,
    container_port: u64,
    probe_path: String,
    probe_port_name: String,
    probe_fails_within_ms: u64,
    pre_stop_ms: u64,
}

fn load() -> Manifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/k8s/deployment.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let spec = &docs[0]["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let int = |y: &Yaml| y.as_i64().unwrap() as u64;
    let command = c["command"][0].as_str().expect("the container's command");
    assert!(
        command.ends_with("/tokio_http"),
        "the manifest runs {command}, not the example this test starts"
    );
    let args = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let budget_env_ms = c["env"].as_vec().and_then(|env| {
        env.iter()
            .find(|e| e["name"].as_str() == Some("GRACEFUL_KILL_BUDGET_MS"))
            .map(|e| e["value"].as_str().unwrap().parse().unwrap())
    });
    let probe = &c["readinessProbe"];
    let port_name = probe["httpGet"]["port"].as_str().unwrap().to_string();
    let container_port = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(port_name.as_str()))
        .map(|p| int(&p["containerPort"]))
        .expect("the probe's port is a named container port");
    Manifest {
        grace_ms: int(&spec["terminationGracePeriodSeconds"]) * 1000,
        args,
        budget_env_ms,
        container_port,
        probe_path: probe["httpGet"]["path"].as_str().unwrap().to_string(),
        probe_port_name: port_name,
        probe_fails_within_ms: int(&probe["periodSeconds"])
            * int(&probe["failureThreshold"])
            * 1000,
        pre_stop_ms: pre_stop_ms(&c["lifecycle"]["preStop"]),
    }
}

/// How long the container's `preStop` hook holds SIGTERM back: none, or
/// its `sleep.seconds`; any other form (an `exec` of `sleep`, say) fails
/// the test rather than being counted as nothing.
fn pre_stop_ms(hook: &Yaml) -> u64 {
    if hook.is_badvalue() {
        return 0;
    }
    let seconds = hook["sleep"]["seconds"].as_i64();
    let seconds =
        seconds.unwrap_or_else(|| panic!("a preStop hook this test cannot time: {hook:?}"));
    seconds as u64 * 1000
}

fn flag(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} missing"));
    args[i + 1].clone()
}

/// Time for endpoint removal to reach kube-proxy and load balancers.
const PROPAGATION_MS: u64 = 1000;
/// After the deadline: the settle time and the exit.
const SETTLE_AND_EXIT_MS: u64 = 1000;

#[test]
fn the_manifest_numbers_agree() {
    let m = load();
    let pre_drain: u64 = flag(&m.args, "--pre-drain-ms").parse().unwrap();
    let timeout: u64 = flag(&m.args, "--timeout-ms").parse().unwrap();
    let addr: std::net::SocketAddr = flag(&m.args, "--addr").parse().unwrap();

    assert_eq!(
        m.probe_path, "/healthz",
        "the probe checks the readiness endpoint"
    );
    assert_eq!(m.probe_port_name, "http");
    assert_eq!(
        u64::from(addr.port()),
        m.container_port,
        "the process listens on the probed port"
    );
    assert!(
        m.probe_fails_within_ms + PROPAGATION_MS <= pre_drain,
        "readiness must fail and propagate ({} ms) within the pre-drain delay ({pre_drain} ms)",
        m.probe_fails_within_ms + PROPAGATION_MS
    );
    let needed = m.pre_stop_ms + pre_drain + timeout + SETTLE_AND_EXIT_MS;
    assert!(
        needed < m.grace_ms,
        "preStop + pre-drain + deadline + settle = {needed} ms must fit in terminationGracePeriodSeconds ({} ms)",
        m.grace_ms
    );
    assert_eq!(
        m.budget_env_ms,
        Some(m.grace_ms),
        "GRACEFUL_KILL_BUDGET_MS tells the process its grace period"
    );
}

#[test]
fn the_example_runs_with_the_manifest_args_and_fits_its_budget() {
    let m = load();
    let mut args: Vec<String> = m.args.clone();
    let addr_at = args.iter().position(|a| a == "--addr").unwrap();
    args.drain(addr_at..addr_at + 2); // the harness picks a loopback port
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let budget = m.budget_env_ms.unwrap().to_string();
    let mut s = Service::start_with("tokio_http", &args, |cmd| {
        cmd.env("KUBERNETES_SERVICE_HOST", "10.96.0.1")
            .env("GRACEFUL_KILL_BUDGET_MS", &budget);
    });
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    s.signal("TERM");
    s.signal("TERM"); // skip the 5 s pre-drain: this test is about start-up
    let _ = s.exit_code();
    let log = s.stderr();
    assert!(
        !log.contains("killed mid-drain"),
        "the manifest's numbers fit the budget: {log}"
    );
}
