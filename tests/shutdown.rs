//! Graceful shutdown: SIGTERM stops accepting, lets requests in flight
//! finish, and exits 0.

use crate::harness::{Site, client, component};
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let site = Site::new();
    site.put("hostile.wasm", component("fixtures/hostile"));
    let mut server = site.serve(&[], &[]);
    server.wait_serving("hostile").await;

    let url = server.url("/hostile/sleep?1500");
    let in_flight = tokio::spawn(async move {
        let response = client().get(&url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    server.wait_log("SIGTERM: shutting down", Duration::from_secs(5));

    assert_eq!(in_flight.await.unwrap(), (200, "slept 1500 ms".to_owned()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "gatehouse did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(&server.addr).is_err(),
        "the listener is closed after shutdown"
    );
}
