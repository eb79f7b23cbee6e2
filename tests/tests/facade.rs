//! The facade crate reaches every layer by its short name.

#[test]
fn facade_reexports_the_identity_layer() {
    let keypair = carrier::id::Keypair::from_seed(&[7; 32]);
    let shown = keypair.id().to_string();
    let parsed: carrier::id::CarrierId = shown.parse().expect("an id parses back");
    assert_eq!(parsed, keypair.id());
}
