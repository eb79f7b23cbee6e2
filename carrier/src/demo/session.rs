//! The session the stream and channel steps run in: Alice requests it, Bob's handler for the
//! `demo` bundles accepts it.

use std::time::Instant;

use carrier::stream::Session;

use super::steps::{ms, step, Error};
use super::Demo;

/// The bundle prefix Bob takes sessions for, and the bundle Alice asks for under it.
const HANDLED: &str = "demo";
const BUNDLE: &str = "demo/files";

/// A session between the friends, as each side holds it.
pub(super) struct Pair {
    pub(super) alice: Session,
    pub(super) bob: Session,
}

/// Bob registers his handler; Alice requests a session; Bob accepts it.
pub(super) async fn open(demo: &Demo) -> Result<Pair, Error> {
    let asked = Instant::now();
    let mut requests = demo.bob.sessions()?.handle(HANDLED)?;
    let ask = async {
        Ok::<_, Error>(
            demo.alice
                .sessions()?
                .request(&demo.bob.id(), BUNDLE)
                .await?,
        )
    };
    let take = async {
        let request = requests
            .recv()
            .await
            .ok_or("Bob's session handler closed")?;
        if request.bundle() != BUNDLE {
            return Err(format!("Bob got a request for {:?}", request.bundle()).into());
        }
        Ok::<_, Error>(request.accept().await?)
    };
    let (alice, bob) = tokio::try_join!(ask, take)?;
    step(
        demo.started,
        &format!(
            "Alice asks Bob for a session (bundle \"{BUNDLE}\", an invite to his node); his \
             handler for \"{HANDLED}\" accepts it ({:.1} ms)",
            ms(asked)
        ),
    );
    Ok(Pair { alice, bob })
}
