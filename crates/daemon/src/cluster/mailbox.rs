//! Mailboxes in Redis: what a bind takes (waiting messages, or for a
//! resuming `pushd.v2` connection everything after its place), keeping the
//! uids of `pushd.v2` connections resumable, and the operator's list and clear.

use std::time::Instant;

use pushd_proto::uid::Uid;
use tokio::sync::oneshot;

use super::presence::PresenceCommand;
use super::{Cluster, Partial, scripts};

/// What a bind took from its uid's mailbox in Redis.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Oldest first: the id (`ms-N`) and the payload.
    pub(crate) messages: Vec<(String, Vec<u8>)>,
    /// How many of them had not been delivered before.
    pub(crate) waiting: u64,
    /// Waiting messages found past the TTL and dropped.
    pub(crate) expired: u64,
    /// A resume whose `since` is older than what Redis still holds.
    pub(crate) gap: bool,
    /// The number of the newest message in the uid's stream: what
    /// [`Cluster::ack_mailbox`] confirms once the messages are handed over.
    pub(crate) last: u64,
    /// The newest number the uid's stream holds or let go of: a `pushd.v2`
    /// connection bound now is owed what comes after it, besides what this
    /// take hands over (a catch-up starts there).
    pub(crate) place: u64,
}

/// A bind that takes its uid's mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Bind {
    pub(crate) uid: Uid,
    /// Its connection, on this node.
    pub(crate) connection: u64,
    pub(crate) resume: Resume,
    /// When it bound: what had not expired then is handed over.
    pub(crate) at: Instant,
}

/// Where a binding connection is, for [`Cluster::take_mailbox`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resume {
    /// A raw connection: the waiting messages.
    Raw,
    /// A `pushd.v2` connection without `since`: the waiting messages, and from
    /// now on the uid's pushes are kept for resumes.
    Fresh,
    /// A `pushd.v2` connection after the cluster's message `MS-N`.
    After {
        /// The id's first part (0: a broadcast's, which repeats the last N).
        ms: u64,
        /// Its number.
        n: u64,
    },
    /// A `pushd.v2` connection whose `since` is no id of the cluster's.
    Unknown,
    /// A bound `pushd.v2` connection that was given message N (this node's own
    /// record, trusted), catching up on what the bus may have lost.
    CatchUp {
        /// The newest number it was given.
        n: u64,
    },
}

impl Resume {
    /// The take script's argument.
    pub(super) fn arg(self) -> String {
        match self {
            Resume::Raw => String::new(),
            Resume::Fresh => "new".into(),
            Resume::After { ms, n } => format!("{ms}-{n}"),
            Resume::Unknown => "gap".into(),
            Resume::CatchUp { n } => format!("c{n}"),
        }
    }
}

impl Cluster {
    /// Takes what waits for `uid` in Redis, once this node's presence of it is
    /// written: from then on every push reaches this node instead, so nothing
    /// lands in the mailbox after it was taken. A `pushd.v2` connection that
    /// resumes gets everything after its place too. Binds that take at the same
    /// time share one presence write and one script call (through the presence writer).
    pub(crate) async fn take_mailbox(&self, bind: &Bind) -> Result<Taken, String> {
        if self.mailbox.is_none() {
            return Ok(Taken::default());
        }
        let stopped = || "the presence writer has stopped".to_owned();
        let (done, taken) = oneshot::channel();
        let command = PresenceCommand::Take(bind.clone(), done);
        self.presence.send(command).await.map_err(|_| stopped())?;
        match tokio::time::timeout(self.timeout, taken).await {
            Ok(taken) => taken.unwrap_or_else(|_| Err(stopped())),
            Err(_) => Err(format!(
                "Redis did not answer within {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    /// The mailboxes of `uids`, taken in one script (for the presence writer, right
    /// after it wrote the uids' presence). A message is handed over if it had not
    /// expired when its uid bound, however late Redis runs the script (a pause).
    pub(super) async fn take_mailboxes(&self, binds: &[&Bind]) -> Result<Vec<Taken>, String> {
        let Some(limits) = self.mailbox else {
            return Ok(binds.iter().map(|_| Taken::default()).collect());
        };
        let mut invocation = self.scripts.take.prepare_invoke();
        invocation
            .arg(self.keys.prefix())
            .arg(limits.ttl.as_millis() as u64);
        for bind in binds {
            let age = bind.at.elapsed().as_millis() as u64;
            invocation
                .arg(bind.uid.as_str())
                .arg(bind.resume.arg())
                .arg(age)
                .arg(self.claim(bind));
        }
        type Answer = (u64, u8, u64, Vec<Vec<u8>>, u64, u64);
        let taken: redis::RedisResult<Vec<Answer>> =
            invocation.invoke_async(&mut self.conn()).await;
        match taken {
            Ok(taken) if taken.len() == binds.len() => Ok(taken
                .into_iter()
                .map(|(expired, gap, waiting, flat, last, place)| {
                    let mut flat = flat.into_iter();
                    let mut messages = Vec::new();
                    while let (Some(id), Some(payload)) = (flat.next(), flat.next()) {
                        messages.push((String::from_utf8_lossy(&id).into_owned(), payload));
                    }
                    Taken {
                        messages,
                        waiting,
                        expired,
                        gap: gap == 1,
                        last,
                        place,
                    }
                })
                .collect()),
            Ok(_) => Err("Redis answered the take script with the wrong shape".into()),
            Err(err) => Err(self.unreachable_note(Some(&err))),
        }
    }

    /// Confirms that what a take of `uid` answered, up to message number
    /// `last`, was handed to a connection: a resumable uid's stream marks it
    /// handed over, any other uid's lets it go. Until then Redis keeps it, so a
    /// take whose answer was lost hands it to the uid's next bind instead.
    pub(crate) async fn ack_mailbox(&self, bind: &Bind, last: u64) -> redis::RedisResult<()> {
        self.scripts
            .ack
            .arg(self.keys.prefix())
            .arg(bind.uid.as_str())
            .arg(last)
            .arg(self.claim(bind))
            .invoke_async(&mut self.conn())
            .await
    }

    /// The name of what `bind` claims in Redis: unique in the cluster.
    fn claim(&self, bind: &Bind) -> String {
        format!("{}:{}", self.id, bind.connection)
    }

    /// Keeps the uids that have `pushd.v2` connections here resumable (see
    /// [`scripts::KEEPALIVE_MS`]).
    pub(super) async fn keep_resumable(&self, uids: &[Uid]) -> redis::RedisResult<()> {
        let Some(limits) = self.mailbox else {
            return Ok(());
        };
        let expiry = limits.ttl.as_millis() as u64 + scripts::KEEPALIVE_MS;
        for chunk in uids.chunks(1000) {
            let mut pipe = redis::pipe();
            for uid in chunk {
                pipe.pexpire(self.keys.v2(uid), expiry as i64).ignore();
            }
            pipe.query_async::<()>(&mut self.conn()).await?;
        }
        Ok(())
    }

    /// Every mailbox in Redis that holds messages: uid, messages, payload bytes, and
    /// milliseconds since its oldest message.
    pub(crate) async fn mailboxes(&self) -> Partial<Vec<(String, u64, u64, u64)>> {
        if self.mailbox.is_none() {
            return Partial::default();
        }
        let listed: redis::RedisResult<Vec<(String, u64, u64, u64)>> = self
            .scripts
            .mailboxes
            .arg(self.keys.prefix())
            .invoke_async(&mut self.conn())
            .await;
        match listed {
            Ok(mut listed) => {
                listed.sort();
                Partial {
                    value: listed,
                    incomplete: Vec::new(),
                }
            }
            Err(err) => self.partial(Vec::new(), self.unreachable_note(Some(&err))),
        }
    }

    /// Empties the mailboxes of `uids` in Redis (a kick); returns the messages dropped.
    pub(crate) async fn clear_mailboxes(&self, uids: &[Uid]) -> u64 {
        if self.mailbox.is_none() {
            return 0;
        }
        let mut invocation = self.scripts.clear.prepare_invoke();
        invocation.arg(self.keys.prefix()).arg(0);
        for uid in uids {
            invocation.arg(uid.as_str());
        }
        invocation.invoke_async(&mut self.conn()).await.unwrap_or(0)
    }
}
