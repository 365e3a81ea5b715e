//! What the events remember, for a consumer that comes back (`Last-Event-ID`,
//! `?since=`, `pushctl events --since`): the last `--events-retain` events,
//! and the newest one no longer held, which tells a resume that starts before
//! it that it missed some (a `gap` event).

use std::collections::VecDeque;
use std::fmt;

use super::Published;

/// An event's id, `MS-N`: a Redis stream entry's id in cluster mode (so ids
/// increase in the whole cluster), else this process's start in ms and the
/// event's number. Ordered as that pair of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EventId {
    ms: u64,
    n: u64,
}

impl EventId {
    pub(crate) const fn new(ms: u64, n: u64) -> Self {
        EventId { ms, n }
    }

    /// `MS-N`; `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (ms, n) = text.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(n) {
            return None;
        }
        Some(EventId {
            ms: ms.parse().ok()?,
            n: n.parse().ok()?,
        })
    }

    /// The id just before this one.
    pub(crate) fn before(self) -> Self {
        match self.n {
            0 => EventId {
                ms: self.ms.saturating_sub(1),
                n: u64::MAX,
            },
            n => EventId {
                ms: self.ms,
                n: n - 1,
            },
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.n)
    }
}

/// The events held for resumes, oldest first, in id order.
#[derive(Debug)]
pub(super) struct History {
    retain: usize,
    held: VecDeque<Published>,
    /// The newest event that is no longer held (or that came before what
    /// this process can know); a resume from before it missed events.
    lost: Option<EventId>,
}

/// What a resume gets from the history.
#[derive(Debug)]
pub(super) struct Since {
    /// The newest event that cannot be given, when one after `since` is lost.
    pub(super) gap: Option<EventId>,
    /// Every event held after `since`, oldest first.
    pub(super) events: VecDeque<Published>,
}

impl History {
    /// Keeps `retain` events; `lost`: the newest event already out of reach.
    pub(super) fn new(retain: usize, lost: Option<EventId>) -> Self {
        History {
            retain,
            held: VecDeque::with_capacity(retain.min(1024)),
            lost,
        }
    }

    /// Keeps `event`, the newest; the oldest goes when it is full.
    pub(super) fn push(&mut self, event: Published) {
        if self.held.len() >= self.retain {
            match self.held.pop_front() {
                Some(old) => self.lost = Some(old.id),
                None => {
                    self.lost = Some(event.id);
                    return;
                }
            }
        }
        self.held.push_back(event);
    }

    /// Everything up to `lost` is out of reach (what a node's stream had
    /// dropped before this node read it).
    pub(super) fn lose_through(&mut self, lost: EventId) {
        self.lost = self.lost.max(Some(lost));
    }

    /// The events after `since`, and whether some of those are lost.
    pub(super) fn since(&self, since: EventId) -> Since {
        let first = self.held.partition_point(|event| event.id <= since);
        Since {
            gap: self.lost.filter(|lost| since < *lost),
            events: self.held.range(first..).cloned().collect(),
        }
    }

    /// The id of the newest event held.
    pub(super) fn newest(&self) -> Option<EventId> {
        self.held.back().map(|event| event.id)
    }

    /// Where a consumer that starts now stands: after the newest event held,
    /// or known to be gone.
    pub(super) fn position(&self) -> Option<EventId> {
        self.newest().or(self.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::Kind;

    fn event(n: u64) -> Published {
        Published {
            kind: Kind::Online,
            id: EventId::new(100, n),
            body: bytes::Bytes::from_static(b"{}"),
        }
    }

    fn ids(since: &Since) -> Vec<u64> {
        since.events.iter().map(|e| e.id.n).collect()
    }

    #[test]
    fn ids_parse_and_order_as_numbers() {
        let a = EventId::parse("1733500000000-9").unwrap();
        let b = EventId::parse("1733500000000-10").unwrap();
        assert!(a < b, "9 before 10, not as text");
        assert_eq!(b.to_string(), "1733500000000-10");
        assert_eq!(b.before(), a);
        assert_eq!(EventId::new(5, 0).before(), EventId::new(4, u64::MAX));
        for bad in ["", "12", "-1", "1-", "a-1", "1-2-3", "1--2", "+1-2"] {
            assert_eq!(EventId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_resume_gets_what_came_after_it_and_a_gap_when_some_is_gone() {
        let mut history = History::new(3, Some(EventId::new(100, 0)));
        for n in 1..=3 {
            history.push(event(n));
        }
        let from_start = history.since(EventId::new(100, 0));
        assert_eq!((from_start.gap, ids(&from_start)), (None, vec![1, 2, 3]));
        let older = history.since(EventId::new(99, 7));
        assert_eq!(older.gap, Some(EventId::new(100, 0)), "before this process");

        history.push(event(4));
        let after_1 = history.since(EventId::new(100, 1));
        assert_eq!((after_1.gap, ids(&after_1)), (None, vec![2, 3, 4]));
        let after_0 = history.since(EventId::new(100, 0));
        assert_eq!(after_0.gap, Some(EventId::new(100, 1)), "event 1 went");
        assert_eq!(ids(&after_0), [2, 3, 4]);
        let caught_up = history.since(EventId::new(100, 4));
        assert_eq!((caught_up.gap, ids(&caught_up)), (None, vec![]));
        assert_eq!(history.newest(), Some(EventId::new(100, 4)));
    }

    #[test]
    fn holding_nothing_loses_everything() {
        let mut history = History::new(0, None);
        history.push(event(1));
        assert_eq!(
            history.since(EventId::new(100, 0)).gap,
            Some(EventId::new(100, 1))
        );
        assert!(history.since(EventId::new(100, 1)).gap.is_none());
    }
}
