//! The session the stream and channel steps run in: Alice requests it, Bob's handler for the
//! `demo` bundles accepts it.

use std::time::Instant;

use std::future::Future;

use carrier::stream::{Session, Stream, StreamKind, StreamMode};

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

impl Pair {
    /// Alice adds a stream in `mode`; Bob takes it. (Alice's end, Bob's end).
    pub(super) async fn stream(&self, mode: StreamMode) -> Result<(Stream, Stream), Error> {
        let (sending, receiving) = self
            .alongside_bob(async {
                Ok(self.alice.add_stream(StreamKind::Application, mode).await?)
            })
            .await?;
        if receiving.mode() != mode {
            return Err(format!("Bob got a {:?} stream", receiving.mode()).into());
        }
        Ok((sending, receiving))
    }

    /// What Alice does to add a stream (`adding`), while Bob takes the stream it adds.
    /// (What Alice got, Bob's end).
    pub(super) async fn alongside_bob<T>(
        &self,
        adding: impl Future<Output = Result<T, Error>>,
    ) -> Result<(T, Stream), Error> {
        let taking = async {
            self.bob
                .accept_stream()
                .await
                .ok_or_else(|| Error::from("the session closed before Bob got the stream"))
        };
        tokio::try_join!(adding, taking)
    }
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
