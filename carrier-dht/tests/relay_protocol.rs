//! The relay protocol without I/O: its decoders (proptests), and the relay's table in virtual
//! time against every abuse of issue 19's item 5: a session to an unregistered node, a
//! session from a spoofed source, a registration for someone else's ID, forwarding outside a
//! session, a flood within the budget.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use carrier_dht::bounded::BoundedBytes;
use carrier_dht::id::Keypair;
use carrier_dht::relay::frame::{
    decode_data, encode_data, Control, DATA_HEADER_BYTES, MAX_CONTROL_BYTES, MAX_DATA_FRAME_BYTES,
    MAX_RELAYED_PAYLOAD_BYTES,
};
use carrier_dht::{
    Key, Now, RelayDrop, RelayLimits, RelayRefusal, RelayTable, RelayTransmit, SessionId, Token,
    WireError,
};
use proptest::prelude::*;

const UNIX_MS: u64 = 1_700_000_000_000;

struct Lab {
    relay: RelayTable,
    start: Instant,
    elapsed: Duration,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid in test")
}

fn relay_key() -> Key {
    Key::of_node(&Keypair::from_seed(&[7; 32]).id())
}

impl Lab {
    fn new(limits: RelayLimits) -> Self {
        Self {
            relay: RelayTable::new(relay_key(), [3; 32], limits),
            start: Instant::now(),
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now::new(
            self.start + self.elapsed,
            UNIX_MS + self.elapsed.as_millis() as u64,
        )
    }

    fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    fn send(&mut self, src: SocketAddr, control: &Control) -> Vec<RelayTransmit> {
        let now = self.now();
        self.relay.handle_control(now, src, &control.encode())
    }

    /// The single reply to `src`, decoded.
    fn reply(&mut self, src: SocketAddr, control: &Control) -> Control {
        let out = self.send(src, control);
        let to_src: Vec<_> = out.iter().filter(|t| t.dest == src).collect();
        assert_eq!(to_src.len(), 1, "one reply to the sender: {out:?}");
        Control::decode(&to_src[0].frame).expect("the relay's frames decode")
    }

    fn token(&mut self, src: SocketAddr) -> Token {
        match self.reply(src, &Control::hello()) {
            Control::Challenge { token } => token,
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    fn register(&mut self, keypair: &Keypair, src: SocketAddr) -> Control {
        let token = self.token(src);
        self.reply(src, &Control::register(keypair, &relay_key(), token))
    }

    /// Opens a session from `src` to `target`; returns the reply to the opener and the frames
    /// sent to anyone else.
    fn open(&mut self, src: SocketAddr, target: Key) -> (Control, Vec<RelayTransmit>) {
        let token = self.token(src);
        let out = self.send(src, &Control::Open { target, token });
        let (to_src, others): (Vec<_>, Vec<_>) = out.into_iter().partition(|t| t.dest == src);
        assert_eq!(to_src.len(), 1, "one reply to the opener");
        (
            Control::decode(&to_src[0].frame).expect("the relay's frames decode"),
            others,
        )
    }

    fn forward(&mut self, src: SocketAddr, frame: &[u8]) -> Result<SocketAddr, RelayDrop> {
        let now = self.now();
        self.relay.forward(now, src, frame)
    }
}

fn key_of(keypair: &Keypair) -> Key {
    Key::of_node(&keypair.id())
}

/// A registered node at `nated` and an open session from `peer` to it.
fn session_between(lab: &mut Lab, nated: SocketAddr, peer: SocketAddr) -> (Keypair, SessionId) {
    let node = Keypair::from_seed(&[11; 32]);
    assert!(matches!(
        lab.register(&node, nated),
        Control::Registered { .. }
    ));
    let (reply, notices) = lab.open(peer, key_of(&node));
    let Control::Opened { session, target } = reply else {
        panic!("expected Opened, got {reply:?}");
    };
    assert_eq!(target, key_of(&node));
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].dest, nated);
    assert_eq!(
        Control::decode(&notices[0].frame).expect("decodes"),
        Control::Incoming { session, peer }
    );
    (node, session)
}

fn controls() -> impl Strategy<Value = Control> {
    let token = any::<[u8; 16]>().prop_map(Token);
    let key = any::<[u8; 32]>().prop_map(Key);
    let session = any::<u64>().prop_map(SessionId);
    let refusal = prop_oneof![
        Just(RelayRefusal::BadToken),
        Just(RelayRefusal::BadSignature),
        Just(RelayRefusal::NotRegistered),
        Just(RelayRefusal::Full),
        Just(RelayRefusal::RateLimited),
        Just(RelayRefusal::NoSession),
    ];
    let socket = (any::<[u8; 16]>(), any::<u16>(), any::<bool>()).prop_map(|(ip, port, v4)| {
        if v4 {
            SocketAddr::from(([ip[0], ip[1], ip[2], ip[3]], port))
        } else {
            SocketAddr::from((ip, port))
        }
    });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=64).prop_map(|p| Control::Hello {
            padding: BoundedBytes::new(p).expect("within the cap")
        }),
        token.clone().prop_map(|token| Control::Challenge { token }),
        (any::<[u8; 32]>(), token.clone()).prop_map(|(seed, token)| Control::register(
            &Keypair::from_seed(&seed),
            &relay_key(),
            token
        )),
        (token.clone(), any::<u16>()).prop_map(|(token, keepalive_secs)| Control::Registered {
            token,
            keepalive_secs
        }),
        token.clone().prop_map(|token| Control::KeepAlive { token }),
        token
            .clone()
            .prop_map(|token| Control::KeepAliveAck { token }),
        (key.clone(), token).prop_map(|(target, token)| Control::Open { target, token }),
        (session.clone(), key).prop_map(|(session, target)| Control::Opened { session, target }),
        (session.clone(), socket).prop_map(|(session, peer)| Control::Incoming { session, peer }),
        session
            .clone()
            .prop_map(|session| Control::Close { session }),
        session.prop_map(|session| Control::Closed { session }),
        refusal.prop_map(|reason| Control::Refused { reason }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_relay_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
        if let Ok(control) = Control::decode(&bytes) {
            // Whatever decodes is canonical: it encodes to the same bytes.
            prop_assert_eq!(control.encode(), bytes.clone());
        }
        if let Ok((session, payload)) = decode_data(&bytes) {
            prop_assert_eq!(encode_data(session, payload), Some(bytes.clone()));
        }
    }

    #[test]
    fn control_frames_round_trip_within_their_cap_and_refuse_trailing_bytes(control in controls(), extra in 1u8..) {
        let frame = control.encode();
        prop_assert!(frame.len() <= MAX_CONTROL_BYTES, "{} bytes", frame.len());
        prop_assert_eq!(Control::decode(&frame), Ok(control));
        let mut longer = frame.clone();
        longer.push(extra);
        prop_assert_eq!(Control::decode(&longer), Err(WireError::Trailing(1)));
        prop_assert!(decode_data(&frame).is_err());
    }

    #[test]
    fn data_frames_round_trip_and_refuse_oversize(session in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 1..=MAX_RELAYED_PAYLOAD_BYTES)) {
        let frame = encode_data(SessionId(session), &payload).expect("fits");
        prop_assert_eq!(frame.len(), payload.len() + DATA_HEADER_BYTES);
        prop_assert_eq!(decode_data(&frame), Ok((SessionId(session), &payload[..])));
        prop_assert!(Control::decode(&frame).is_err());
        let mut over = payload.clone();
        over.resize(MAX_RELAYED_PAYLOAD_BYTES + 1, 0);
        prop_assert!(encode_data(SessionId(session), &over).is_none());
    }

    #[test]
    fn arbitrary_frames_from_anywhere_never_make_the_relay_send_more_than_it_got(
        frames in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..300), 0u8..4, any::<bool>()), 1..60),
    ) {
        let mut lab = Lab::new(RelayLimits::default());
        let nated = addr("10.0.0.2:4000");
        let peer = addr("10.0.1.3:5000");
        let (_node, session) = session_between(&mut lab, nated, peer);
        let before = lab.relay.counters();
        for (mut bytes, who, data) in frames {
            let src = [nated, peer, addr("10.9.9.9:1"), addr("[2001:db8::1]:2")][usize::from(who)];
            if data {
                let mut frame = encode_data(session, b"x").expect("fits");
                frame.truncate(DATA_HEADER_BYTES);
                frame.append(&mut bytes);
                let _ = lab.forward(src, &frame);
            } else {
                bytes.insert(0, 0x02);
                for transmit in lab.send(src, &Control::Hello { padding: BoundedBytes::default() }) {
                    prop_assert!(transmit.frame.len() <= 3);
                }
                let now = lab.now();
                let _ = lab.relay.handle_control(now, src, &bytes);
            }
            lab.advance(Duration::from_millis(100));
        }
        let after = lab.relay.counters();
        prop_assert!(after.bytes_out - before.bytes_out <= after.bytes_in - before.bytes_in);
    }
}

#[test]
fn a_registered_node_and_a_peer_exchange_data_byte_for_byte_both_ways() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (_node, session) = session_between(&mut lab, nated, peer);
    let to_nated = encode_data(session, b"quic packet from the peer").expect("fits");
    assert_eq!(lab.forward(peer, &to_nated), Ok(nated));
    let to_peer = encode_data(session, &[0x55; MAX_RELAYED_PAYLOAD_BYTES]).expect("fits");
    assert_eq!(to_peer.len(), MAX_DATA_FRAME_BYTES);
    assert_eq!(lab.forward(nated, &to_peer), Ok(peer));
    let counters = lab.relay.counters();
    assert_eq!(counters.forwarded_frames, 2);
    assert_eq!(
        counters.forwarded_bytes,
        (to_nated.len() + to_peer.len()) as u64
    );
    assert!(counters.bytes_out <= counters.bytes_in);
    assert_eq!((lab.relay.registrations(), lab.relay.sessions()), (1, 1));
}

#[test]
fn a_session_to_an_unregistered_node_is_refused() {
    let mut lab = Lab::new(RelayLimits::default());
    let stranger = key_of(&Keypair::from_seed(&[12; 32]));
    let (reply, others) = lab.open(addr("198.51.100.7:50000"), stranger);
    assert_eq!(
        reply,
        Control::Refused {
            reason: RelayRefusal::NotRegistered
        }
    );
    assert!(others.is_empty());
    assert_eq!(lab.relay.sessions(), 0);
    assert_eq!(lab.relay.counters().refused_not_registered, 1);
}

#[test]
fn a_session_from_a_spoofed_source_without_its_token_is_refused_and_nothing_reaches_the_target() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let node = Keypair::from_seed(&[11; 32]);
    assert!(matches!(
        lab.register(&node, nated),
        Control::Registered { .. }
    ));
    // The attacker holds a token for its own address and claims the victim's.
    let attacker = addr("203.0.113.66:6666");
    let victim = addr("198.51.100.7:50000");
    let token = lab.token(attacker);
    let out = lab.send(
        victim,
        &Control::Open {
            target: key_of(&node),
            token,
        },
    );
    assert_eq!(
        out.len(),
        1,
        "only a refusal, to the claimed source: {out:?}"
    );
    assert_eq!(out[0].dest, victim);
    assert_eq!(
        Control::decode(&out[0].frame),
        Ok(Control::Refused {
            reason: RelayRefusal::BadToken
        })
    );
    // A made-up token fails the same way.
    let out = lab.send(
        victim,
        &Control::Open {
            target: key_of(&node),
            token: Token([0; 16]),
        },
    );
    assert!(out.iter().all(|t| t.dest == victim));
    assert_eq!(lab.relay.sessions(), 0);
    assert_eq!(lab.relay.counters().refused_bad_token, 2);
    // A token from an earlier epoch has expired: 5-minute epochs, valid one to two of them.
    let old = lab.token(victim);
    lab.advance(Duration::from_secs(11 * 60));
    assert!(matches!(
        lab.register(&node, nated),
        Control::Registered { .. }
    ));
    let out = lab.send(
        victim,
        &Control::Open {
            target: key_of(&node),
            token: old,
        },
    );
    assert_eq!(out.len(), 1);
    assert_eq!(lab.relay.sessions(), 0);
}

#[test]
fn a_registration_for_someone_elses_id_is_refused() {
    let mut lab = Lab::new(RelayLimits::default());
    let honest = Keypair::from_seed(&[11; 32]);
    let forger = Keypair::from_seed(&[13; 32]);
    let attacker = addr("203.0.113.66:6666");
    let token = lab.token(attacker);
    // Signed by another key, claiming the honest ID.
    let forged = match Control::register(&forger, &relay_key(), token) {
        Control::Register {
            token, signature, ..
        } => Control::Register {
            id: honest.id(),
            token,
            signature,
        },
        other => panic!("not a registration: {other:?}"),
    };
    assert_eq!(
        lab.reply(attacker, &forged),
        Control::Refused {
            reason: RelayRefusal::BadSignature
        }
    );
    // The honest node's real registration, replayed from the attacker's address: its token
    // binds the honest address.
    let honest_addr = addr("192.0.2.10:40000");
    let honest_token = lab.token(honest_addr);
    let genuine = Control::register(&honest, &relay_key(), honest_token);
    assert_eq!(
        lab.reply(attacker, &genuine),
        Control::Refused {
            reason: RelayRefusal::BadToken
        }
    );
    // Signed for another relay: refused here.
    let elsewhere = Control::register(&honest, &Key([9; 32]), token);
    let Control::Register { signature, .. } = elsewhere else {
        panic!("not a registration");
    };
    let replayed = Control::Register {
        id: honest.id(),
        token,
        signature,
    };
    assert_eq!(
        lab.reply(attacker, &replayed),
        Control::Refused {
            reason: RelayRefusal::BadSignature
        }
    );
    assert_eq!(lab.relay.registrations(), 0);
    assert_eq!(lab.relay.registered_addr(&key_of(&honest)), None);
    // The genuine one from its own address is taken.
    assert!(matches!(
        lab.reply(honest_addr, &genuine),
        Control::Registered { .. }
    ));
    assert_eq!(
        lab.relay.registered_addr(&key_of(&honest)),
        Some(honest_addr)
    );
}

#[test]
fn forwarding_outside_a_session_is_dropped() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let third = addr("203.0.113.66:6666");
    let (_node, session) = session_between(&mut lab, nated, peer);
    // A session that does not exist.
    let unknown = encode_data(SessionId(session.0 ^ 1), b"hello").expect("fits");
    assert_eq!(lab.forward(peer, &unknown), Err(RelayDrop::NoSession));
    // A real session, from an address that is neither end (same IP, other port too).
    let frame = encode_data(session, b"hello").expect("fits");
    assert_eq!(lab.forward(third, &frame), Err(RelayDrop::NotAnEnd));
    assert_eq!(
        lab.forward(addr("198.51.100.7:50001"), &frame),
        Err(RelayDrop::NotAnEnd)
    );
    // A third party cannot close it either.
    assert!(lab.send(third, &Control::Close { session }).is_empty());
    assert_eq!(lab.forward(peer, &frame), Ok(nated));
    // Closed by an end: the other end hears of it, and nothing passes any more.
    let out = lab.send(peer, &Control::Close { session });
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, nated);
    assert_eq!(
        Control::decode(&out[0].frame),
        Ok(Control::Closed { session })
    );
    assert_eq!(lab.forward(peer, &frame), Err(RelayDrop::NoSession));
    assert_eq!(lab.forward(nated, &frame), Err(RelayDrop::NoSession));
    // A frame with no payload, or of another class, is malformed.
    assert_eq!(
        lab.forward(peer, &frame[..DATA_HEADER_BYTES]),
        Err(RelayDrop::Malformed)
    );
    let counters = lab.relay.counters();
    assert_eq!(counters.dropped_outside_session, 6);
    assert_eq!(counters.forwarded_frames, 1);
    assert_eq!(counters.malformed, 1);
}

#[test]
fn a_flood_stays_within_the_budget_and_leaves_other_sessions_their_fair_share() {
    let budget = 100_000u32;
    let mut lab = Lab::new(RelayLimits {
        bandwidth_bytes_per_sec: budget,
        ..RelayLimits::default()
    });
    let nated = addr("192.0.2.10:40000");
    let flooder = addr("198.51.100.7:50000");
    let modest = addr("198.51.100.8:50000");
    let (node, flood) = session_between(&mut lab, nated, flooder);
    let (reply, _) = lab.open(modest, key_of(&node));
    let Control::Opened { session: calm, .. } = reply else {
        panic!("expected Opened, got {reply:?}");
    };
    let big = encode_data(flood, &[1; 1200]).expect("fits");
    let small = encode_data(calm, &[2; 1000]).expect("fits");
    let mut forwarded = [0u64; 2];
    for _second in 0..10 {
        // The flood: ten times the budget, in one second's worth of frames.
        for i in 0..1000u32 {
            if lab.forward(flooder, &big).is_ok() {
                forwarded[0] += big.len() as u64;
            }
            if i % 20 == 0 && lab.forward(modest, &small).is_ok() {
                forwarded[1] += small.len() as u64;
            }
            lab.advance(Duration::from_micros(999));
        }
        lab.advance(Duration::from_millis(1));
    }
    // Ten seconds: never more than the budget each second, together.
    assert!(
        forwarded[0] + forwarded[1] <= 10 * u64::from(budget),
        "{forwarded:?}"
    );
    // The calm session asked for 50 KB a second, exactly its half: all of it passed after the
    // first second (where the flooder was alone at first).
    assert!(forwarded[1] >= 9 * 50 * small.len() as u64, "{forwarded:?}");
    // And the flooder got no more than half once both were active.
    assert!(
        forwarded[0] <= u64::from(budget) + 9 * u64::from(budget / 2),
        "{forwarded:?}"
    );
    let counters = lab.relay.counters();
    assert!(counters.dropped_over_budget > 9000);
    assert_eq!(lab.relay.budget_used(), forwarded[0] + forwarded[1]);
    assert!(counters.bytes_out <= counters.bytes_in);
}

#[test]
fn sessions_have_no_cap_on_bytes_or_duration_by_default() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (node, session) = session_between(&mut lab, nated, peer);
    let frame = encode_data(session, &[7; 1400]).expect("fits");
    let mut keepalive_token = lab.token(nated);
    // Six hours, a burst every 10 s and a keep-alive every 15 s: far past libp2p's 2 minutes
    // and 128 KiB.
    for step in 0..(6 * 3600 / 5) {
        lab.advance(Duration::from_secs(5));
        if step % 3 == 0 {
            match lab.reply(
                nated,
                &Control::KeepAlive {
                    token: keepalive_token,
                },
            ) {
                Control::KeepAliveAck { token } => keepalive_token = token,
                other => panic!("keep-alive refused at step {step}: {other:?}"),
            }
        }
        if step % 2 == 0 {
            for _ in 0..10 {
                assert_eq!(lab.forward(peer, &frame), Ok(nated), "step {step}");
            }
        }
        let expired = lab.relay.poll_expired(lab.now());
        assert!(expired.is_empty());
    }
    assert!(lab.relay.counters().forwarded_bytes > 16 * 1024 * 1024);
    assert_eq!(lab.relay.registered_addr(&key_of(&node)), Some(nated));
    assert_eq!(lab.relay.sessions(), 1);
}

#[test]
fn configured_caps_on_bytes_and_duration_close_a_session() {
    let mut lab = Lab::new(RelayLimits {
        max_session_bytes: Some(10_000),
        ..RelayLimits::default()
    });
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (_, session) = session_between(&mut lab, nated, peer);
    let frame = encode_data(session, &[7; 991]).expect("fits");
    for _ in 0..10 {
        assert_eq!(lab.forward(peer, &frame), Ok(nated));
    }
    assert_eq!(lab.forward(peer, &frame), Err(RelayDrop::CapReached));
    assert_eq!(lab.relay.sessions(), 0);

    let mut lab = Lab::new(RelayLimits {
        max_session_duration: Some(Duration::from_secs(30)),
        ..RelayLimits::default()
    });
    let (_, session) = session_between(&mut lab, nated, peer);
    let frame = encode_data(session, b"x").expect("fits");
    lab.advance(Duration::from_secs(20));
    assert_eq!(lab.forward(peer, &frame), Ok(nated));
    lab.advance(Duration::from_secs(11));
    assert_eq!(lab.forward(peer, &frame), Err(RelayDrop::CapReached));
}

#[test]
fn a_silent_registration_expires_with_its_sessions_and_the_opener_is_told() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (node, session) = session_between(&mut lab, nated, peer);
    let frame = encode_data(session, b"x").expect("fits");
    // Data keeps the session alive but not the registration: only keep-alives do.
    for _ in 0..9 {
        lab.advance(Duration::from_secs(5));
        assert_eq!(lab.forward(peer, &frame), Ok(nated));
    }
    lab.advance(Duration::from_secs(1));
    let notices = lab.relay.poll_expired(lab.now());
    assert_eq!(
        notices,
        vec![RelayTransmit {
            dest: peer,
            frame: Control::Closed { session }.encode()
        }]
    );
    assert_eq!(lab.relay.registered_addr(&key_of(&node)), None);
    assert_eq!(lab.forward(peer, &frame), Err(RelayDrop::NoSession));
    let token = lab.token(nated);
    assert_eq!(
        lab.reply(nated, &Control::KeepAlive { token }),
        Control::Refused {
            reason: RelayRefusal::NotRegistered
        }
    );
    assert_eq!(lab.relay.counters().registrations_expired, 1);
}

#[test]
fn an_idle_session_expires_and_both_ends_are_told() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (_node, session) = session_between(&mut lab, nated, peer);
    let mut token = lab.token(nated);
    for _ in 0..4 {
        lab.advance(Duration::from_secs(15));
        match lab.reply(nated, &Control::KeepAlive { token }) {
            Control::KeepAliveAck { token: next } => token = next,
            other => panic!("{other:?}"),
        }
    }
    lab.advance(Duration::from_secs(1));
    let notices = lab.relay.poll_expired(lab.now());
    let closed = Control::Closed { session }.encode();
    assert!(notices.iter().all(|t| t.frame == closed));
    let mut dests: Vec<_> = notices.into_iter().map(|t| t.dest).collect();
    dests.sort();
    let mut expected = vec![nated, peer];
    expected.sort();
    assert_eq!(dests, expected);
    assert_eq!(lab.relay.sessions(), 0);
    assert_eq!(lab.relay.registrations(), 1);
}

#[test]
fn a_node_that_moves_takes_its_sessions_along() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (node, session) = session_between(&mut lab, nated, peer);
    let moved = addr("192.0.2.10:40123");
    let token = lab.token(moved);
    let out = lab.send(moved, &Control::register(&node, &relay_key(), token));
    let frames: Vec<Control> = out
        .iter()
        .map(|t| {
            assert_eq!(t.dest, moved, "only the node hears of its move");
            Control::decode(&t.frame).expect("decodes")
        })
        .collect();
    assert!(matches!(frames[0], Control::Registered { .. }));
    // It is told of its session again: a node that restarted on another port knows none.
    assert_eq!(frames[1..], [Control::Incoming { session, peer }]);
    let frame = encode_data(session, b"x").expect("fits");
    assert_eq!(lab.forward(peer, &frame), Ok(moved));
    assert_eq!(lab.forward(moved, &frame), Ok(peer));
    assert_eq!(lab.forward(nated, &frame), Err(RelayDrop::NotAnEnd));
    // The old address holds no registration any more.
    let token = lab.token(nated);
    assert_eq!(
        lab.reply(nated, &Control::KeepAlive { token }),
        Control::Refused {
            reason: RelayRefusal::NotRegistered
        }
    );
}

#[test]
fn registrations_are_capped_and_limited_per_source() {
    let mut lab = Lab::new(RelayLimits {
        max_registrations: 3,
        ..RelayLimits::default()
    });
    for i in 0..3u8 {
        let node = Keypair::from_seed(&[20 + i; 32]);
        let src = SocketAddr::from(([192, 0, 2, 10 + i], 4000));
        assert!(matches!(
            lab.register(&node, src),
            Control::Registered { .. }
        ));
    }
    let fourth = Keypair::from_seed(&[30; 32]);
    assert_eq!(
        lab.register(&fourth, addr("192.0.2.50:4000")),
        Control::Refused {
            reason: RelayRefusal::Full
        }
    );
    // A renewal of a registered node still passes when full.
    let first = Keypair::from_seed(&[20; 32]);
    assert!(matches!(
        lab.register(&first, addr("192.0.2.10:4000")),
        Control::Registered { .. }
    ));
    assert_eq!(lab.relay.registrations(), 3);

    // One source registering over and over: its burst (16), then refused.
    let mut lab = Lab::new(RelayLimits::default());
    let src = addr("203.0.113.66:6666");
    let mut refused = 0;
    for i in 0..40u8 {
        let node = Keypair::from_seed(&[100 + i; 32]);
        let port_src = SocketAddr::new(src.ip(), 6000 + u16::from(i));
        if lab.register(&node, port_src)
            == (Control::Refused {
                reason: RelayRefusal::RateLimited,
            })
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 40 - 16);
    assert_eq!(lab.relay.registrations(), 16);
}

#[test]
fn new_sessions_are_limited_per_source_and_per_target() {
    let mut lab = Lab::new(RelayLimits {
        max_sessions_per_target: 5,
        ..RelayLimits::default()
    });
    let nated = addr("192.0.2.10:40000");
    let node = Keypair::from_seed(&[11; 32]);
    assert!(matches!(
        lab.register(&node, nated),
        Control::Registered { .. }
    ));
    let mut outcomes = Vec::new();
    for port in 0..8u16 {
        let (reply, _) = lab.open(
            SocketAddr::from(([198, 51, 100, 7], 5000 + port)),
            key_of(&node),
        );
        outcomes.push(matches!(reply, Control::Opened { .. }));
    }
    assert_eq!(
        outcomes,
        [true, true, true, true, true, false, false, false]
    );
    assert_eq!(lab.relay.counters().refused_full, 3);

    // One source opening sessions to many targets: its burst (32), then refused.
    let mut lab = Lab::new(RelayLimits::default());
    let mut targets = Vec::new();
    for i in 0..40u8 {
        let node = Keypair::from_seed(&[100 + i; 32]);
        let src = SocketAddr::from(([192, 0, 2, i], 4000));
        assert!(matches!(
            lab.register(&node, src),
            Control::Registered { .. }
        ));
        targets.push(key_of(&node));
    }
    let opener = addr("198.51.100.7:5000");
    let opened = targets
        .iter()
        .filter(|target| {
            let token = lab.token(opener);
            let out = lab.send(
                opener,
                &Control::Open {
                    target: **target,
                    token,
                },
            );
            matches!(Control::decode(&out[0].frame), Ok(Control::Opened { .. }))
        })
        .count();
    assert_eq!(opened, 32);
}

#[test]
fn an_open_retransmitted_gets_the_same_session_and_the_target_is_told_again() {
    let mut lab = Lab::new(RelayLimits::default());
    let nated = addr("192.0.2.10:40000");
    let peer = addr("198.51.100.7:50000");
    let (node, session) = session_between(&mut lab, nated, peer);
    let (reply, notices) = lab.open(peer, key_of(&node));
    assert_eq!(
        reply,
        Control::Opened {
            session,
            target: key_of(&node)
        }
    );
    // The target is told again: the first notice may have been lost.
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].dest, nated);
    assert_eq!(
        Control::decode(&notices[0].frame).expect("decodes"),
        Control::Incoming { session, peer }
    );
    assert_eq!(lab.relay.sessions(), 1);
}

#[test]
fn no_reply_is_longer_than_the_frame_it_answers() {
    let mut lab = Lab::new(RelayLimits::default());
    let src = addr("198.51.100.7:50000");
    // A hello without padding is too short for its challenge: no answer.
    assert!(lab
        .send(
            src,
            &Control::Hello {
                padding: BoundedBytes::default()
            }
        )
        .is_empty());
    let hello = Control::hello().encode();
    let now = lab.now();
    let out = lab.relay.handle_control(now, src, &hello);
    assert_eq!(out.len(), 1);
    assert!(out[0].frame.len() <= hello.len());
    // Frames meant for clients are ignored by the relay.
    let token = lab.token(src);
    assert!(lab.send(src, &Control::Challenge { token }).is_empty());
    assert!(lab
        .send(
            src,
            &Control::Closed {
                session: SessionId(1)
            }
        )
        .is_empty());
}
