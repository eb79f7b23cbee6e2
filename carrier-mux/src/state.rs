//! What a mux's handles, channels and tasks share: the table of open channels, each
//! channel's writer state, the queue of control frames, the events, and whether the
//! multiplexed stream is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::MuxConfig;
use crate::credit::SendCredit;
use crate::error::CloseReason;
use crate::event::{ChannelId, MuxEvent};
use crate::report::{ChannelChange, Reporter};
use crate::wire::Control;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; a poisoned lock's data is still whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One channel as its writer and the control reader share it.
#[derive(Debug)]
pub(crate) struct ChannelShared {
    pub(crate) state: Mutex<ChannelState>,
}

#[derive(Debug)]
pub(crate) struct ChannelState {
    pub(crate) credit: SendCredit,
    /// The friend pended the channel: its writer waits.
    pub(crate) paused: bool,
    /// Why the channel closed, if it did (by the friend, or lost).
    pub(crate) closed: Option<CloseReason>,
    pub(crate) write_waker: Option<Waker>,
    pub(crate) read_waker: Option<Waker>,
}

impl ChannelShared {
    pub(crate) fn new(credit: u64) -> Arc<Self> {
        Arc::new(ChannelShared {
            state: Mutex::new(ChannelState {
                credit: SendCredit::new(credit),
                paused: false,
                closed: None,
                write_waker: None,
                read_waker: None,
            }),
        })
    }

    /// Changes the state and wakes the writer (and the reader, if `reader`).
    pub(crate) fn update(&self, reader: bool, change: impl FnOnce(&mut ChannelState)) {
        let (writer, reader) = {
            let mut state = lock(&self.state);
            change(&mut state);
            let reader = if reader {
                state.read_waker.take()
            } else {
                None
            };
            (state.write_waker.take(), reader)
        };
        for waker in [writer, reader].into_iter().flatten() {
            waker.wake();
        }
    }
}

/// What the mux's handles, channels and tasks share.
#[derive(Debug)]
pub(crate) struct MuxShared {
    pub(crate) config: MuxConfig,
    /// The observer of every mux of the node, if the config names one.
    pub(crate) reporter: Reporter,
    pub(crate) channels: Mutex<HashMap<u32, Arc<ChannelShared>>>,
    control: mpsc::UnboundedSender<Control>,
    events: mpsc::UnboundedSender<MuxEvent>,
    pub(crate) event_inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<MuxEvent>>,
    gone: Mutex<Option<String>>,
}

impl MuxShared {
    pub(crate) fn new(
        config: MuxConfig,
        control: mpsc::UnboundedSender<Control>,
        reporter: Reporter,
    ) -> Arc<MuxShared> {
        let (events, event_inbox) = mpsc::unbounded_channel();
        Arc::new(MuxShared {
            config,
            reporter,
            channels: Mutex::new(HashMap::new()),
            control,
            events,
            event_inbox: tokio::sync::Mutex::new(event_inbox),
            gone: Mutex::new(None),
        })
    }

    /// Queues a control frame for the multiplexed stream; a gone stream takes none.
    pub(crate) fn send(&self, frame: Control) {
        // The writer task ends only with the mux; a frame after that has nobody to reach.
        let _ = self.control.send(frame);
    }

    pub(crate) fn emit(&self, event: MuxEvent) {
        let (channel, change) = match &event {
            MuxEvent::Pending(channel) => (*channel, ChannelChange::Pending),
            MuxEvent::Resumed(channel) => (*channel, ChannelChange::Resumed),
            MuxEvent::Closed(channel, reason) => (*channel, ChannelChange::Closed(reason.clone())),
        };
        self.reporter.report(channel, change);
        // Nobody listening is the application's choice.
        let _ = self.events.send(event);
    }

    /// Why the multiplexed stream is gone, if it is.
    pub(crate) fn gone(&self) -> Option<String> {
        lock(&self.gone).clone()
    }

    pub(crate) fn channel(&self, id: u32) -> Option<Arc<ChannelShared>> {
        lock(&self.channels).get(&id).cloned()
    }

    pub(crate) fn forget(&self, id: u32) {
        lock(&self.channels).remove(&id);
    }

    /// The multiplexed stream is gone: every channel closes with `reason`, once. The events
    /// are all queued before anyone sees the mux gone (the lock is held meanwhile), so
    /// [`Mux::next_event`](crate::Mux::next_event) never ends before the last of them.
    pub(crate) fn lose(&self, reason: &str) {
        let mut gone = lock(&self.gone);
        if gone.is_some() {
            return;
        }
        *gone = Some(reason.to_owned());
        let channels: Vec<(u32, Arc<ChannelShared>)> = lock(&self.channels).drain().collect();
        for (id, channel) in channels {
            let mut newly = false;
            channel.update(true, |state| {
                if state.closed.is_none() {
                    state.closed = Some(CloseReason::Lost(reason.to_owned()));
                    newly = true;
                }
            });
            if newly {
                self.emit(MuxEvent::Closed(
                    ChannelId(id),
                    CloseReason::Lost(reason.to_owned()),
                ));
            }
        }
        drop(gone);
    }
}

/// Keeps a mux's tasks running while any handle, request or channel of it lives.
#[derive(Debug)]
pub(crate) struct MuxLife {
    pub(crate) shared: Arc<MuxShared>,
    pub(crate) tasks: Vec<AbortHandle>,
}

impl Drop for MuxLife {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
