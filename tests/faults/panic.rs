//! A handler that panics: the stack's CatchPanicLayer answers 500, the interceptor reports the
//! request once as an ordinary 500, the memory it held and its budget go back.

use std::time::Duration;

use crate::run;
use crate::support::Server;
use crate::support::invariants::{MIB, Watch};
use crate::support::load::send;
use crate::support::reports::{REPORT_LOGS, exactly};

#[test]
fn a_panicking_handler_is_a_500_with_one_report() {
    let env: Vec<(&str, &str)> = REPORT_LOGS
        .iter()
        .copied()
        // With RUST_BACKTRACE set, the panic hook resolves symbols inside the handler's poll: the
        // first panic of a debug build then reads ~100 MiB of debug info (charged to that
        // request). Measured here is the panic itself.
        .chain([("FAULT_ROUTES", "true"), ("RUST_BACKTRACE", "0")])
        .collect();
    let server = Server::start("server", &env);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        for round in 1..=3 {
            // The handler holds 4 MiB; the panic machinery allocates too.
            let case = watch.case(&format!("handler panic #{round}"), 16 * MIB);
            let answer = send(
                &addr,
                "GET",
                "/api/faults/panic",
                None,
                Duration::from_secs(10),
            )
            .await
            .expect("an answer, not a reset");
            assert_eq!(answer.status, 500);
            let reports = exactly(&server, "/api/faults/panic", round).await;
            let last = &reports[round - 1];
            assert_eq!(last["status"], "500", "{last}");
            assert_eq!(last["outcome"], "completed", "{last}");
            assert!(
                last["allocated"].as_u64().unwrap() >= 4 * MIB,
                "the handler's block is charged: {last}"
            );
            case.finish("500, one report, budget returned", 0).await;
        }
        let hello = send(&addr, "GET", "/api/hello", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((hello.status, &hello.body[..]), (200, &b"hello"[..]));
    });
}
