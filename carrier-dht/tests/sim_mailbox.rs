//! Mailboxes in the simulated network: 10,000 nodes, letters fetched by their recipients and
//! gone once deleted, still fetched after 30% of the nodes die; and, in a smaller network,
//! storers handing mailboxes on to the nodes that became closest after the churn.

use std::time::{Duration, Instant};

use carrier_dht::sim::{run_mailbox_scenario, MailboxFigures, MailboxScenario};

/// 10,000 unless `CARRIER_SIM_NODES` says otherwise (for quick local runs).
fn nodes() -> usize {
    std::env::var("CARRIER_SIM_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

fn report(name: &str, figures: &MailboxFigures, started: Instant) {
    println!(
        "{name}: {} nodes, deposits {:.4}, fetched {:.4}, gone after delete {:.4}, fetched \
         after 30% churn {:.4}, handed on {:?}, {} datagrams, {:.0} s virtual, {:.1} s wall",
        figures.nodes,
        figures.deposit_success,
        figures.fetched,
        figures.gone_after_delete,
        figures.fetched_after_churn,
        figures.handed_on,
        figures.datagrams,
        figures.virtual_secs,
        started.elapsed().as_secs_f64(),
    );
}

#[test]
fn ten_thousand_nodes_deliver_letters_delete_them_and_survive_thirty_percent_churn() {
    let started = Instant::now();
    let figures = run_mailbox_scenario(&MailboxScenario::standard(nodes()));
    report("dht.sim_mailbox", &figures, started);
    assert_eq!(figures.deposit_success, 1.0, "every deposit is stored");
    assert_eq!(figures.fetched, 1.0, "every letter is fetched");
    assert_eq!(
        figures.gone_after_delete, 1.0,
        "every deleted letter is gone"
    );
    assert!(
        figures.fetched_after_churn >= 0.99,
        "letters after churn: {figures:?}"
    );
}

#[test]
fn storers_hand_mailboxes_on_to_the_nodes_closest_after_churn() {
    let started = Instant::now();
    let scenario = MailboxScenario {
        recipients: 50,
        handoff_interval: Some(Duration::from_secs(5 * 60)),
        ..MailboxScenario::standard(500)
    };
    let figures = run_mailbox_scenario(&scenario);
    report("dht.sim_mailbox_handoff", &figures, started);
    assert!(figures.fetched_after_churn >= 0.99, "{figures:?}");
    assert!(
        figures.handed_on.is_some_and(|h| h >= 0.95),
        "mailboxes handed on: {figures:?}"
    );
}
