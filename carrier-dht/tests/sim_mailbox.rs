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
#[ignore = "run by its own step with its own budget: `cargo xtask ci --only sim`"]
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

#[test]
fn nodes_that_join_close_to_a_mailbox_receive_its_items_at_once() {
    use carrier_dht::sim::{SimConfig, Simulation};
    use carrier_dht::{Key, MailboxKind, QueryOutcome, K};

    const FIRST: usize = 400;
    const LATER: usize = 100;
    let mut sim = Simulation::new(SimConfig {
        nodes: FIRST + LATER,
        seed: 5,
        ..SimConfig::default()
    });
    sim.join_first(FIRST);
    sim.run_for(Duration::from_secs(65));
    let mut deposits = Vec::new();
    for recipient in 0..50 {
        let sender = (recipient * 7 + 3) % FIRST;
        let to = sim.node(recipient).keypair().id();
        let mut mailbox = Key([0; 32]);
        let id = sim.start(sender, |node, now| {
            let (id, key) = node
                .deposit(now, &to, MailboxKind::Messages, b"waiting for you")
                .ok()?;
            mailbox = key;
            Some(id)
        });
        deposits.push((sender, id.expect("started"), mailbox));
        sim.run_for(Duration::from_millis(2));
    }
    sim.run_until_done(Duration::from_secs(60));
    let mut items = Vec::new();
    for (sender, id, mailbox) in deposits {
        let done = sim.take_result(sender, id).expect("finished");
        let QueryOutcome::MailboxStored { acks, .. } = done.outcome else {
            panic!("a deposit finishes as stored: {:?}", done.outcome);
        };
        assert!(acks.iter().all(|(_, n)| *n > 0));
        items.push((
            mailbox,
            acks.into_iter().map(|(i, _)| i).collect::<Vec<_>>(),
        ));
    }

    // A hundred more nodes join; no periodic hand-on falls due in the next minute.
    let later: Vec<usize> = (FIRST..FIRST + LATER).collect();
    sim.join_later(&later);
    sim.run_for(Duration::from_secs(60));
    let index_of =
        |sim: &Simulation, key: &Key| (0..sim.len()).find(|&i| sim.node(i).key() == *key);
    let (mut with_newcomers, mut complete) = (0, 0);
    for (mailbox, ids) in &items {
        let closest = sim.true_closest(mailbox, usize::MAX, K);
        let indices: Vec<usize> = closest.iter().filter_map(|k| index_of(&sim, k)).collect();
        if indices.iter().any(|&i| i >= FIRST) {
            with_newcomers += 1;
        }
        if indices.iter().all(|&i| {
            ids.iter()
                .all(|id| sim.node(i).mailboxes().holds(mailbox, id))
        }) {
            complete += 1;
        }
    }
    println!(
        "dht.sim_mailbox_join: {with_newcomers} of {} mailboxes gained a newcomer among their \
         K closest; {complete} held by all K closest a minute later",
        items.len()
    );
    assert!(with_newcomers >= 20, "the scenario moves mailboxes");
    assert!(
        complete as f64 >= 0.95 * items.len() as f64,
        "{complete} complete"
    );
}
