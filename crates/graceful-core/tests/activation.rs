//! Socket activation as systemd passes it, in a child process of this test
//! binary (the activation takes descriptors 3 and up, and the process's
//! environment): the listener asked for by name, the first one when no
//! name matches, the variables cleared, and a descriptor that is not a TCP
//! listener refused.

#![cfg(all(unix, feature = "systemd", feature = "restart"))]

use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::process::Command;

use command_fds::{CommandFdExt, FdMapping};

/// What the child is asked to do, in this variable.
const MODE: &str = "GRACEFUL_ACTIVATION_TEST";

/// Run in the child: takes the activated sockets as `MODE` says and prints
/// what it found on one line.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    let found = match mode.strip_prefix("pick:") {
        Some(name) => match graceful_core::systemd::activated_listener(name) {
            Ok(Some(l)) => format!("port {}", l.local_addr().unwrap().port()),
            Ok(None) => "none".to_string(),
            Err(e) => format!("error {e}"),
        },
        None => match graceful_core::systemd::activated_listeners() {
            Ok(all) => format!("{} listeners", all.len()),
            Err(e) => format!("error {e}"),
        },
    };
    let left: Vec<&str> = [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDS_FIRST_FD",
        "LISTEN_FDNAMES",
        "GRACEFUL_RESTART_ALONE",
    ]
    .into_iter()
    .filter(|v| std::env::var_os(v).is_some())
    .collect();
    println!("RESULT {found}; left {left:?}");
}

/// Runs [`child`] with `fds` at descriptors 3 and up, named `names`.
fn activated(mode: &str, fds: Vec<OwnedFd>, names: &str) -> String {
    let mappings = fds
        .into_iter()
        .enumerate()
        .map(|(i, fd)| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect::<Vec<_>>();
    let count = mappings.len();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$; export LISTEN_PID; exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture", "--quiet"])
        .env(MODE, mode)
        .env("LISTEN_FDS", count.to_string())
        .env("LISTEN_FDS_FIRST_FD", "3")
        .env("LISTEN_FDNAMES", names)
        // A restart's, naming another process: ignored, and cleared too.
        .env("GRACEFUL_RESTART_ALONE", "1:1:1:1");
    cmd.fd_mappings(mappings).unwrap();
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result: {stdout}"))
        .to_string()
}

fn two_listeners() -> (Vec<OwnedFd>, [u16; 2]) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports = [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ];
    (vec![a.into(), b.into()], ports)
}

/// The listener named as asked is taken, not the first; the activation
/// variables are cleared, so children do not inherit them.
#[test]
fn the_listener_named_is_taken_and_the_variables_cleared() {
    let (fds, [_, b]) = two_listeners();
    assert_eq!(
        activated("pick:b", fds, "a:b"),
        format!("port {b}; left []")
    );
}

/// With no listener of that name, the first one is taken.
#[test]
fn with_no_listener_of_that_name_the_first_is_taken() {
    let (fds, [a, _]) = two_listeners();
    assert_eq!(
        activated("pick:c", fds, "a:b"),
        format!("port {a}; left []")
    );
}

/// A descriptor that is not a TCP listening socket is an error.
#[test]
fn a_descriptor_that_is_not_a_tcp_listener_is_an_error() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let found = activated("all", vec![tcp.into(), udp.into()], "a:b");
    assert!(found.starts_with("error fd 4 "), "{found}");
}
