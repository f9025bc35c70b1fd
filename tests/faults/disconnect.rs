//! Clients that disconnect mid-upload and mid-download: the temporary file is removed, the
//! budget is whole again, and each request ends in exactly one report.

use std::time::Duration;

use crate::run;
use crate::support::Server;
use crate::support::invariants::{MIB, Watch, files};
use crate::support::raw::{Raw, head};
use crate::support::reports::{REPORT_LOGS, exactly};
use test_support::wait_for_async;

#[test]
fn clients_that_go_away_leave_nothing_behind() {
    // Bodies over 1 MiB stream to a temporary file.
    let env: Vec<(&str, &str)> = REPORT_LOGS
        .iter()
        .copied()
        .chain([("STREAM_BUFFER_THRESHOLD", "1048576")])
        .collect();
    let server = Server::start("server", &env);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        for round in 1..=3 {
            let case = watch.case(&format!("disconnect mid-upload #{round}"), 8 * MIB);
            let mut c = Raw::connect(&addr).await;
            c.send(&head("POST", "/api/uploads", &["Content-Length: 8388608"]))
                .await
                .unwrap();
            c.send(&vec![b'u'; 2 << 20]).await.unwrap();
            // The body is on its way to disk when the client goes.
            let dir = watch.upload_dir().to_owned();
            wait_for_async(Duration::from_secs(5), "a spool file", || {
                let dir = dir.clone();
                async move {
                    files(&dir)
                        .iter()
                        .any(|f| f.starts_with(".spool-"))
                        .then_some(())
                }
            })
            .await;
            drop(c);
            let reports = exactly(&server, "/api/uploads", round).await;
            let report = &reports[round - 1];
            // The body broke off: the layer's answer (400) is what the report records.
            assert_eq!(report["status"], "400", "{report}");
            case.finish("one report (status 400, the body broke off)", 0)
                .await;
        }

        // A response made at once goes to hyper as one frame: the request is over for the layers
        // (outcome `completed`) before the client leaves; a streamed one ends `body_dropped`.
        for (route, path, outcome) in [
            ("/api/documents", "/api/documents?count=20000", "completed"),
            (
                "/api/events",
                "/api/events?count=1000&interval_ms=10",
                "body_dropped",
            ),
        ] {
            for round in 1..=3 {
                let case = watch.case(
                    &format!("disconnect mid-download {route} #{round}"),
                    32 * MIB,
                );
                let mut c = Raw::connect(&addr).await;
                c.send(&head("GET", path, &[])).await.unwrap();
                let mut got = 0;
                while got < 256 {
                    let n = c.reader.read_some(Duration::from_secs(10)).await;
                    assert!(n > 0, "the server closed first");
                    got += n;
                }
                drop(c);
                let reports = exactly(&server, route, round).await;
                let report = &reports[round - 1];
                assert_eq!(report["outcome"], outcome, "{report}");
                case.finish(format!("one report, outcome {outcome}"), 0)
                    .await;
            }
        }
    });
}
