//! `[ingest] connections_per_ip_max`: connections past the limit from one address are
//! closed at once and counted; the ones inside it work; closing one frees a place.

use std::time::{Duration, Instant};

use sluice_test_support::*;

fn refused_per_ip(server: &Server) -> u64 {
    let text = server.admin_client().request(&get("/metrics")).text();
    let name = "sluice_connections_refused_per_ip_total{";
    text.lines().filter(|line| line.starts_with(name)).filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

#[test]
fn the_fifth_connection_from_one_address_is_closed_at_once() {
    let sandbox = Sandbox::new(Setup { connections_per_ip_max: Some(4), ..Setup::default() });
    let server = sandbox.start();
    let mut held: Vec<Client> = (0..4).map(|_| server.client()).collect();
    for client in &mut held {
        assert_eq!(client.request(&get("/healthz")).status, 200);
    }
    let mut fifth = server.client();
    assert!(fifth.is_closed_by_peer(Duration::from_secs(5)), "the fifth connection stays open");
    assert_eq!(refused_per_ip(&server), 1);
    for client in &mut held {
        assert_eq!(client.request(&get("/healthz")).status, 200, "the first four still work");
    }

    drop(held.pop());
    // The server sees the close asynchronously; a place frees up within moments.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = server.client();
        if again.try_send(&get("/healthz")).is_ok()
            && let Ok(Some(response)) = again.try_read_response()
        {
            assert_eq!(response.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "closing a connection did not free a place");
        std::thread::sleep(Duration::from_millis(50));
    }
}
