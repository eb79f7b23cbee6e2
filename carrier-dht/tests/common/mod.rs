//! What the real-socket tests share.

use std::time::Duration;

use carrier_dht::Dht;

/// Waits until the nodes' routing tables stop changing: servers enter tables only once they
/// answer a check at their address, so a test that counts on full tables waits for those
/// checks to end (bounded: 100 × 50 ms).
pub(crate) async fn settle(nodes: &[Dht]) {
    let mut last = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let total: usize = nodes.iter().map(Dht::routing_entries).sum();
        let checking: usize = nodes
            .iter()
            .map(|n| n.with_node(|c| c.pending_requests()))
            .sum();
        if total == last && checking == 0 {
            break;
        }
        last = total;
    }
}

/// Waits until `state` reads the same twice, 200 ms apart (bounded: 50 reads): for background
/// work the test cannot await, such as mailboxes being handed on.
#[allow(dead_code)] // Not every test file that shares this module uses it.
pub(crate) async fn until_still<T: PartialEq>(mut state: impl FnMut() -> T) {
    let mut last = state();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = state();
        if now == last {
            return;
        }
        last = now;
    }
}
