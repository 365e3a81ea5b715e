//! One timer for the deadlines of every connection.
//!
//! A tokio `Sleep` in each connection's task was 112 of its bytes, and they
//! decided the size of the task itself (tokio's task cells come in steps of
//! 128 bytes): without it, an idle connection costs a 384-byte cell instead of
//! a 512-byte one. Here a connection's next wake-up (heartbeat, ping, bind
//! deadline; see `session`) is an entry in one ordered map, and one task
//! sleeps until the earliest, then sets the due connections' flags and wakes
//! them through their handles. Deadlines are rounded up to the timer grain, so
//! the connections that fall due together share one entry.
//!
//! As with the lazily re-armed `Sleep` before, a connection adds an entry only
//! when its last one fired; one whose deadline moved later wakes it to find
//! that out, as the timer did. An entry is the connection's id, found in the
//! registry when it falls due: a connection that closed meanwhile is simply
//! not there, and its entry kept nothing of it but those 8 bytes (a `Weak`
//! here kept its whole handle's allocation until the deadline passed, so a
//! churn of connections held memory in proportion to churn × heartbeat).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::core::conn::{ConnHandle, ConnId};
use crate::core::registry::Registry;

/// The connections to wake, by when.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    due: Mutex<BTreeMap<Instant, Vec<ConnId>>>,
    /// An entry earlier than all others arrived: the sleeper must look again.
    earlier: Notify,
}

impl Deadlines {
    /// Wakes `handle`'s task at `at` (with its timer flag set).
    pub(crate) fn wake_at(&self, at: Instant, handle: &ConnHandle) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = due.first_key_value().map(|(first, _)| *first);
        due.entry(at).or_default().push(handle.id);
        drop(due);
        if earliest.is_none_or(|first| at < first) {
            self.earlier.notify_one();
        }
    }

    /// Wakes connections as their deadlines fall due, until shutdown; finds
    /// them in `registry`.
    pub(crate) async fn run(&self, registry: &Registry, shutdown: CancellationToken) {
        loop {
            let next = self.lock().first_key_value().map(|(first, _)| *first);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = self.earlier.notified() => continue,
                () = sleep => {}
            }
            let now = Instant::now();
            let fired = {
                let mut due = self.lock();
                let later = due.split_off(&now);
                let mut fired = std::mem::replace(&mut *due, later);
                // An entry for exactly now is due too.
                if let Some(now_entry) = due.remove(&now) {
                    fired.insert(now, now_entry);
                }
                fired
            };
            let ids: Vec<ConnId> = fired.into_values().flatten().collect();
            for handle in registry.handles(&ids) {
                handle.fire_timer();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Instant, Vec<ConnId>>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many entries wait (for the tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::clock::Clock;
    use crate::core::conn::QueueLimits;
    use crate::core::registry::RegistryLimits;
    use std::time::Duration;

    fn registry() -> Arc<Registry> {
        let limits = RegistryLimits {
            queue: QueueLimits {
                messages: 8,
                bytes: 1 << 20,
            },
            per_uid: None,
            mailbox: None,
            hold_at_bind: false,
            groups: crate::core::groups::GroupLimits {
                per_uid: 10,
                memberships: 1000,
            },
        };
        Arc::new(Registry::new(limits, Clock::new(), Arc::default(), None))
    }

    #[tokio::test]
    async fn connections_are_woken_when_due_and_gone_ones_are_dropped() {
        let deadlines = Arc::new(Deadlines::default());
        let registry = registry();
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn({
            let (deadlines, registry, shutdown) =
                (deadlines.clone(), registry.clone(), shutdown.clone());
            async move { deadlines.run(&registry, shutdown).await }
        });
        let peer = "127.0.0.1:1".parse().unwrap();
        let (soon, later, gone) = (
            registry.open(peer, false),
            registry.open(peer, false),
            registry.open(peer, false),
        );
        let now = Instant::now();
        deadlines.wake_at(now + Duration::from_secs(3600), &later);
        // An entry keeps nothing of its connection (a `Weak` kept the handle's
        // allocation alive until the deadline passed, for churned connections too).
        assert_eq!(Arc::weak_count(&later), 0);
        // Earlier than the entry the runner sleeps for: it must look again.
        deadlines.wake_at(now + Duration::from_millis(20), &soon);
        deadlines.wake_at(now + Duration::from_millis(20), &gone);
        registry.close(gone.id, "client");
        let woken = tokio::time::timeout(Duration::from_secs(10), async {
            while !soon.timer_due() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(woken.is_ok(), "the due connection was not woken");
        assert!(soon.take_timer_due() && !soon.timer_due());
        assert!(!later.timer_due() && !gone.timer_due());
        assert_eq!(deadlines.len(), 1, "only the later entry is left");
        shutdown.cancel();
        runner.await.unwrap();
    }
}
