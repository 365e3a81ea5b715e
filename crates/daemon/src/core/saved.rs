//! What a node holds beyond its connections, as plain data that outlives the
//! process: the waiting messages and the retained copies of `pushd.v2` uids,
//! bans, and the message-id position. The state file writes it at a stop and
//! reads it at the next start; a live upgrade hands it to the new process.
//!
//! Moments are wall-clock milliseconds since the Unix epoch, since an
//! `Instant` means nothing to another process: [`Wall`] converts.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ids::{self, MessageId};
use super::payload::Payload;

/// Everything saved, in one value.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Saved {
    /// When it was saved.
    pub(crate) saved_at_ms: u64,
    /// The id position: ids go on from here (same boot, next number).
    pub(crate) ids: SavedIds,
    /// Banned uids and when their ban ends.
    pub(crate) bans: Vec<(String, u64)>,
    /// Every uid's store of messages.
    pub(crate) stores: Vec<SavedStore>,
    /// Every group and its members.
    pub(crate) groups: Vec<SavedGroup>,
}

/// One group: its members, each with the end of its membership, if it has one.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedGroup {
    pub(crate) group: String,
    pub(crate) members: Vec<(String, Option<u64>)>,
}

/// Where message ids are.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct SavedIds {
    /// The first part of every id (`BOOT-N`).
    pub(crate) boot: u64,
    /// The next number.
    pub(crate) next: MessageId,
}

/// One uid's store (see `mailbox::Store`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedStore {
    pub(crate) uid: String,
    /// Until when delivered messages are kept for resumes, if they are.
    pub(crate) resumable_until_ms: Option<u64>,
    /// The newest message let go of before a resuming client could have it.
    pub(crate) lost_through: MessageId,
    /// The newest message of the uid the store saw.
    pub(crate) newest: MessageId,
    /// Oldest first.
    pub(crate) entries: Vec<SavedEntry>,
}

/// One message of a store.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedEntry {
    pub(crate) id: MessageId,
    pub(crate) expires_ms: u64,
    pub(crate) delivered: bool,
    pub(crate) message: Payload,
}

/// What a restore did with what was saved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restored {
    /// Waiting messages back in their mailboxes.
    pub(crate) waiting: u64,
    /// Copies kept for resumes, back.
    pub(crate) copies: u64,
    /// Waiting messages whose TTL passed while pushd was down.
    pub(crate) expired: u64,
    /// Waiting messages that no longer fit (`--mailbox-size`, `--mailbox-memory`,
    /// or the mailbox turned off).
    pub(crate) dropped: u64,
    /// Bans still running.
    pub(crate) bans: u64,
    /// Group memberships back.
    pub(crate) memberships: u64,
    /// Memberships whose TTL passed meanwhile, or that no longer fit.
    pub(crate) memberships_left_out: u64,
}

/// One moment seen on both clocks: converts this process's instants to
/// wall-clock milliseconds and back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wall {
    now: Instant,
    now_ms: u64,
}

impl Wall {
    /// Now, on both clocks.
    pub(crate) fn now() -> Self {
        Wall {
            now: Instant::now(),
            now_ms: ids::unix_ms(),
        }
    }

    /// The instant, here, as wall-clock milliseconds.
    pub(crate) fn ms_of(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.now) {
            Some(ahead) => self.now_ms.saturating_add(ahead.as_millis() as u64),
            None => (self.now_ms).saturating_sub(self.now.duration_since(at).as_millis() as u64),
        }
    }

    /// Wall-clock milliseconds as an instant here, if still in the future.
    pub(crate) fn instant_of(&self, ms: u64) -> Option<Instant> {
        let ahead = ms.checked_sub(self.now_ms).filter(|ahead| *ahead > 0)?;
        let ahead = Duration::from_millis(ahead).min(super::clock::LONGEST);
        Some(self.now + ahead)
    }

    /// The instant.
    pub(crate) fn instant(&self) -> Instant {
        self.now
    }

    /// The wall-clock milliseconds.
    pub(crate) fn ms(&self) -> u64 {
        self.now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_survives_the_round_trip_and_the_past_is_gone() {
        let wall = Wall::now();
        let later = wall.instant() + Duration::from_secs(5);
        let ms = wall.ms_of(later);
        assert_eq!(ms, wall.ms() + 5_000);
        let back = wall.instant_of(ms).unwrap();
        assert_eq!(back, later);
        assert_eq!(wall.instant_of(wall.ms()), None);
        assert_eq!(wall.instant_of(wall.ms() - 1), None);
    }
}
