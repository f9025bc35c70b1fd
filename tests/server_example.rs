//! The main job as a black box: start it, ask it, stop it.

mod support;

use std::time::Duration;

use support::{Server, curl};

#[test]
fn serves_hello_and_stops_cleanly_on_sigterm() {
    let mut server = Server::start("server", &[]);
    let (status, body) = curl(&[&server.url("/api/hello")]);
    assert_eq!((status, body.as_str()), (200, "hello"));
    let exit = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn stops_cleanly_on_sigint() {
    let mut server = Server::start("server", &[]);
    let exit = server.signal_and_wait("INT", Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}
