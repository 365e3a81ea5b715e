//! The cluster's events travel through one Redis stream, `P:events`.
//!
//! Every node adds the events it makes there (one `XADD ... MAXLEN ~ N`
//! each, [`add`]ed by the presence writer to the pipeline of its presence
//! write, so that a `connect` goes before the `online` it causes, in one
//! round trip); `online` and `offline` are added by the
//! presence scripts themselves, once for the cluster, in the same step that
//! decides them. Every node reads the whole stream back ([`read`]) and
//! publishes it to its consumers, its own events included: every node's
//! `/v1/events` and `pushctl events` carry every node's events, in the
//! stream's order, with the stream's ids, which increase in the whole cluster
//! and let a consumer resume on any node.
//!
//! The webhook is posted from the stream too ([`post`]), through a consumer
//! group read by one node at a time: the holder of `P:hook`, a lease renewed
//! as it goes. All nodes read as the same consumer, so the batch a dead
//! holder read and never acknowledged is read again (`XREADGROUP ... 0`) and
//! posted by the next holder, with the same ids.
//!
//! Why a stream, not pub/sub like the bus: the ids, the retention that
//! resumes and the webhook's backlog need, and the consumer group's pending
//! entries, which outlive the node that was posting, come with it; pub/sub
//! would need all three written by hand.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Cluster;
use crate::core::counters::Counter;
use crate::core::events::{EventId, Events, Kind, Outgoing, Published};
use crate::webhook::{self, Backoff, Poster};

/// Events in one read, or one round trip of `XADD`s.
pub(super) const CHUNK: usize = 1000;
/// How long a read waits for new events.
const BLOCK: Duration = Duration::from_secs(2);
/// The webhook's consumer group, and the one consumer name every node reads as.
const GROUP: &str = "webhook";
const CONSUMER: &str = "pushd";

/// Adds the events this node made to the stream; on failure they are kept
/// (up to the outbox's bound) for the next write.
pub(super) async fn write(cluster: &Cluster, events: &Events) -> Result<(), String> {
    let mut outgoing = events.outgoing();
    while !outgoing.is_empty() {
        let rest = outgoing.split_off(outgoing.len().min(CHUNK));
        if let Err(err) = write_these(cluster, events, outgoing).await {
            events.put_back(rest);
            return Err(err);
        }
        outgoing = rest;
    }
    Ok(())
}

/// Adds `outgoing` to the stream in one round trip; on failure they are put
/// back (whether Redis added them is unknown: a consumer may see one twice,
/// with two ids, rather than never).
pub(super) async fn write_these(
    cluster: &Cluster,
    events: &Events,
    outgoing: Vec<Outgoing>,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    add(&mut pipe, cluster, &outgoing);
    if let Err(err) = pipe.query_async::<()>(&mut cluster.conn()).await {
        events.put_back(outgoing);
        return Err(format!("Redis: {err}"));
    }
    Ok(())
}

/// One `XADD` per event in `pipe`, oldest first.
pub(super) fn add(pipe: &mut redis::Pipeline, cluster: &Cluster, outgoing: &[Outgoing]) {
    let key = cluster.keys.events();
    for event in outgoing {
        pipe.cmd("XADD")
            .arg(&key)
            .arg("MAXLEN")
            .arg("~")
            .arg(cluster.events_retain)
            .arg("*")
            .arg("t")
            .arg(event.kind.name())
            .arg("e")
            .arg(&event.body[..])
            .ignore();
    }
}

/// A connection of its own for blocking reads (a shared one would wait with them).
async fn blocking_connection(
    cluster: &Cluster,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cluster.timeout))
        .set_response_timeout(Some(BLOCK + cluster.timeout));
    cluster
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Reads the stream and publishes its events to this node's consumers, until
/// cancelled. First it loads the history (the last `--events-retain`), so
/// that a consumer can resume here from an id another node gave it.
pub(super) async fn read(cluster: Arc<Cluster>, events: Arc<Events>, token: CancellationToken) {
    let key = cluster.keys.events();
    let mut loaded = false;
    let mut failing = false;
    loop {
        let connected = async {
            let mut conn = blocking_connection(&cluster).await?;
            if !loaded {
                load(&mut conn, &key, &events).await?;
                loaded = true;
            }
            redis::RedisResult::Ok(conn)
        };
        let mut conn = tokio::select! {
            () = token.cancelled() => return,
            connected = connected => match connected {
                Ok(conn) => conn,
                Err(err) => {
                    if !failing {
                        failing = true;
                        warn!(%err, "cluster: cannot read the events stream; trying again");
                    }
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            },
        };
        failing = false;
        let master = cluster.master_changes();
        // Past every entry read, events or not (one of a newer version's kinds
        // is passed over, not read again and again).
        let mut from = events
            .newest()
            .map_or_else(|| "0-0".to_owned(), |id| id.to_string());
        // Until the master moves (Sentinel): then read the new one.
        while cluster.master_changes() == master {
            let mut command = redis::cmd("XREAD");
            command
                .arg("COUNT")
                .arg(CHUNK)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(&from);
            let read = command.query_async::<Value>(&mut conn);
            let read = tokio::select! {
                () = token.cancelled() => return,
                read = read => read,
            };
            match read {
                Ok(value) => {
                    for entry in stream_entries(value) {
                        from = entry.id.to_string();
                        if let Some((kind, body)) = entry.event {
                            events.deliver(kind, entry.id, body);
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// The history: the newest `--events-retain` entries, and whether older ones
/// were let go of (then a resume from before them is told of a gap).
async fn load(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    events: &Events,
) -> redis::RedisResult<()> {
    let newest: Value = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(events.retain().max(1))
        .query_async(conn)
        .await?;
    let mut loaded = stream_range(newest);
    loaded.reverse();
    let (added, last) = stream_info(conn, key).await?;
    if added > loaded.len() as u64 {
        match (loaded.first(), last) {
            (Some(first), _) => events.lost_through(first.id.before()),
            // Everything it had went; ids go on from its newest.
            (None, Some(last)) => events.lost_through(last),
            (None, None) => {}
        }
    }
    for entry in loaded {
        if let Some((kind, body)) = entry.event {
            events.deliver(kind, entry.id, body);
        }
    }
    Ok(())
}

/// `entries-added` and `last-generated-id` of `XINFO STREAM` (nothing when
/// there is no stream yet).
async fn stream_info(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<(u64, Option<EventId>)> {
    let info = match redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async::<Value>(conn)
        .await
    {
        Ok(Value::Array(fields)) => fields,
        Ok(Value::Map(pairs)) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Ok(_) => return Ok((0, None)),
        // No stream yet.
        Err(err) if matches!(err.kind(), redis::ErrorKind::Server(_)) => return Ok((0, None)),
        Err(err) => return Err(err),
    };
    let added = info_field(&info, "entries-added")
        .and_then(|value| redis::from_redis_value_ref::<u64>(value).ok())
        .unwrap_or(0);
    let last = info_field(&info, "last-generated-id")
        .and_then(|value| redis::from_redis_value_ref::<String>(value).ok())
        .and_then(|id| EventId::parse(&id));
    Ok((added, last))
}

fn info_field<'a>(info: &'a [Value], name: &str) -> Option<&'a Value> {
    info.chunks(2).find_map(|pair| match pair {
        [Value::BulkString(key), value] if key == name.as_bytes() => Some(value),
        [Value::SimpleString(key), value] if key == name => Some(value),
        _ => None,
    })
}

/// One stream entry: its id, and its event (`None` for an entry the stream
/// let go of while it was pending, or one that is not an event).
struct Entry {
    id: EventId,
    event: Option<(Kind, Bytes)>,
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream.
fn stream_entries(value: Value) -> Vec<Entry> {
    let Value::Array(streams) = value else {
        return Vec::new();
    };
    streams
        .into_iter()
        .flat_map(|stream| match stream {
            Value::Array(mut pair) if pair.len() == 2 => {
                stream_range(pair.pop().unwrap_or(Value::Nil))
            }
            _ => Vec::new(),
        })
        .collect()
}

/// The entries of an `XRANGE`-like reply.
fn stream_range(value: Value) -> Vec<Entry> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries.into_iter().filter_map(entry).collect()
}

fn entry(value: Value) -> Option<Entry> {
    let Value::Array(mut parts) = value else {
        return None;
    };
    let fields = parts.pop()?;
    let id = match parts.pop()? {
        Value::BulkString(id) => EventId::parse(std::str::from_utf8(&id).ok()?)?,
        _ => return None,
    };
    let mut kind = None;
    let mut body = None;
    if let Value::Array(fields) = fields {
        let mut fields = fields.into_iter();
        while let (Some(Value::BulkString(name)), Some(Value::BulkString(value))) =
            (fields.next(), fields.next())
        {
            match &name[..] {
                b"t" => kind = std::str::from_utf8(&value).ok().and_then(Kind::parse),
                b"e" => body = Some(Bytes::from(value)),
                _ => {}
            }
        }
    }
    Some(Entry {
        id,
        event: kind.zip(body),
    })
}

/// `--webhook` in cluster mode: while this node holds `P:hook`, posts the
/// consumer group's batches, each acknowledged once the receiver took it;
/// else waits to take over. Until cancelled.
pub(super) async fn post(cluster: Arc<Cluster>, mut poster: Poster, token: CancellationToken) {
    let key = cluster.keys.events();
    let lease = Lease::new(&cluster);
    let counters = poster.counters();
    let mut holding = false;
    let mut conn = None;
    let mut master = cluster.master_changes();
    loop {
        if token.is_cancelled() {
            return;
        }
        if conn.is_some() && cluster.master_changes() != master {
            conn = None;
        }
        master = cluster.master_changes();
        let holds = lease.hold(&cluster).await;
        if holds != holding {
            holding = holds;
            if holds {
                info!(url = %poster.shown, "webhook: this node posts the cluster's events");
            }
        }
        if !holds {
            conn = None;
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(cluster.lease / 3) => continue,
            }
        }
        let ready = match conn.take() {
            Some(conn) => Ok(conn),
            None => open_group(&cluster, &key).await,
        };
        let Ok(mut ready) = ready else {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => continue,
            }
        };
        // What a holder read and did not acknowledge (maybe a dead one), first.
        let batch = tokio::select! {
            () = token.cancelled() => return,
            batch = next_batch(&mut ready, &key, cluster.lease / 3) => batch,
        };
        let Ok(batch) = batch else {
            continue;
        };
        conn = Some(ready);
        if batch.is_empty() {
            continue;
        }
        let (published, gone): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|entry| entry.event.is_some());
        if !gone.is_empty() {
            // Let go of by the stream while the receiver failed: the bound on the backlog.
            counters.add(Counter::EventsDropped, gone.len() as u64);
            let ids: Vec<EventId> = gone.iter().map(|entry| entry.id).collect();
            let _ = acknowledge(&cluster, &key, &ids).await;
        }
        if published.is_empty() {
            continue;
        }
        let ids: Vec<EventId> = published.iter().map(|entry| entry.id).collect();
        let published: Vec<Published> = published
            .into_iter()
            .filter_map(|entry| {
                let (kind, body) = entry.event?;
                Some(Published {
                    kind,
                    id: entry.id,
                    body,
                })
            })
            .collect();
        let body = webhook::body(&published);
        let mut backoff = Backoff::new();
        loop {
            let deadline = tokio::time::Instant::now() + cluster.lease;
            let posted = tokio::select! {
                () = token.cancelled() => return,
                posted = poster.post(&body, deadline) => posted,
            };
            if posted.is_ok() {
                // Not acknowledged (Redis away): posted again later, same ids.
                let _ = acknowledge(&cluster, &key, &ids).await;
                break;
            }
            // The lease is renewed through the pause (up to 30 s, longer than a
            // lease); lost anyway, another node took over and posts this batch.
            let resume_at = tokio::time::Instant::now() + backoff.next();
            let mut held = true;
            while held && tokio::time::Instant::now() < resume_at {
                let step = (cluster.lease / 3).min(resume_at - tokio::time::Instant::now());
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(step) => {}
                }
                held = lease.hold(&cluster).await;
            }
            if !held {
                break;
            }
        }
    }
}

/// A blocking connection, with the consumer group made if it was not there
/// (it starts at the stream's end: events from before any node had a
/// webhook are not posted).
async fn open_group(
    cluster: &Cluster,
    key: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let mut conn = blocking_connection(cluster).await?;
    let made: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    match made {
        Err(err) if err.code() != Some("BUSYGROUP") => Err(err),
        _ => Ok(conn),
    }
}

/// The next batch: what was read and not acknowledged, else new entries
/// (waiting up to `wait`, then [`webhook::LINGER`] for more).
async fn next_batch(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    wait: Duration,
) -> redis::RedisResult<Vec<Entry>> {
    let pending = read_group(conn, key, "0", None, webhook::BATCH).await?;
    if !pending.is_empty() {
        return Ok(pending);
    }
    let mut batch = read_group(conn, key, ">", Some(wait), webhook::BATCH).await?;
    if !batch.is_empty() && batch.len() < webhook::BATCH {
        tokio::time::sleep(webhook::LINGER).await;
        let more = webhook::BATCH - batch.len();
        batch.extend(read_group(conn, key, ">", None, more).await?);
    }
    Ok(batch)
}

async fn read_group(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    from: &str,
    block: Option<Duration>,
    count: usize,
) -> redis::RedisResult<Vec<Entry>> {
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP")
        .arg(GROUP)
        .arg(CONSUMER)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        read.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    read.arg("STREAMS").arg(key).arg(from);
    Ok(stream_entries(read.query_async::<Value>(conn).await?))
}

async fn acknowledge(cluster: &Cluster, key: &str, ids: &[EventId]) -> redis::RedisResult<()> {
    let mut ack = redis::cmd("XACK");
    ack.arg(key).arg(GROUP);
    for id in ids {
        ack.arg(id.to_string());
    }
    ack.query_async::<u64>(&mut cluster.conn()).await.map(drop)
}

/// `P:hook`: which node posts to the webhook.
struct Lease {
    /// Takes the lease when nobody holds it, renews it when this node does.
    hold: redis::Script,
}

impl Lease {
    fn new(_cluster: &Cluster) -> Self {
        Lease {
            hold: redis::Script::new(
                "local holder = redis.call('GET', KEYS[1])
                 if holder == false or holder == ARGV[1] then
                   redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                   return 1
                 end
                 return 0",
            ),
        }
    }

    /// Whether this node holds the lease now (for `--cluster-lease` more).
    async fn hold(&self, cluster: &Cluster) -> bool {
        let held: redis::RedisResult<u8> = self
            .hold
            .key(cluster.keys.webhook())
            .arg(&cluster.id)
            .arg(cluster.lease.as_millis() as u64)
            .invoke_async(&mut cluster.conn())
            .await;
        matches!(held, Ok(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn entries_of_a_read_and_of_a_pending_read_with_a_deleted_entry() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("pushd:events"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1765000000000-0"),
                    Value::Array(vec![
                        bulk("t"),
                        bulk("online"),
                        bulk("e"),
                        bulk("{\"type\":\"online\"}"),
                    ]),
                ]),
                Value::Array(vec![bulk("1765000000000-1"), Value::Nil]),
                Value::Array(vec![
                    bulk("1765000000001-0"),
                    Value::Array(vec![bulk("t"), bulk("nonsense"), bulk("e"), bulk("{}")]),
                ]),
            ]),
        ])]);
        let entries = stream_entries(reply);
        let ids: Vec<String> = entries.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(
            ids,
            ["1765000000000-0", "1765000000000-1", "1765000000001-0"]
        );
        let (kind, body) = entries[0].event.clone().unwrap();
        assert_eq!(
            (kind, &body[..]),
            (Kind::Online, &b"{\"type\":\"online\"}"[..])
        );
        assert!(entries[1].event.is_none(), "deleted while pending");
        assert!(entries[2].event.is_none(), "not an event");
        assert!(
            stream_entries(Value::Nil).is_empty(),
            "a read that timed out"
        );
    }
}
