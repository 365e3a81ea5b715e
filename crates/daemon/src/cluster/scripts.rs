//! The Lua scripts: each does its lookups and publishes in one round trip, on
//! Redis's clock. Per-node key names are built inside the scripts from the prefix,
//! which standalone Redis allows (Redis Cluster would not; see docs/cluster.md).

use redis::Script;

/// Redis's `TIME` in milliseconds, as the first lines of every script.
macro_rules! with_clock {
    ($body:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n",
            $body
        )
    };
}

/// The scripts, loaded once per process (EVALSHA, falling back to EVAL after a
/// Redis restart forgot them).
#[derive(Debug)]
pub struct Scripts {
    /// `KEYS[1]` nodes; ARGV id, lease ms. Returns 1 when the node was not there.
    pub renew: Script,
    /// `KEYS[1]` nodes; ARGV prefix. Removes expired nodes and their hashes; returns their ids.
    pub reap: Script,
    /// `KEYS[1]` nodes; no ARGV. The live node ids.
    pub live: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, uid. `[id, connections, ...]` for every other
    /// live node whose hash has the uid.
    pub online: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, `1` to name nodes (else `0`), the mailbox's TTL
    /// in ms (`0`: off), size and memory, then uid, payload and keep-flag triples. For each
    /// triple in order, publishes the payload to the inbox of every other live node whose
    /// hash has the uid. Returns per triple the connections registered by the nodes that
    /// received it; with names, `[connections, [node ids that received it], [node ids that
    /// hold the uid but have no subscriber]]`. When no other live node holds the uid and the
    /// flag is `1` (the pushing node has no connection for it, the push is not transient),
    /// the pushed bytes (the payload without its bus header) are kept in the uid's mailbox
    /// stream instead, and the count is -1, or -2
    /// when every mailbox together is at the memory bound.
    pub route: Script,
    /// ARGV prefix, TTL ms, then uids. Takes each uid's mailbox: per uid
    /// `[expired, [payloads...]]`, oldest first; the streams are gone afterwards.
    pub take: Script,
    /// ARGV prefix, TTL ms, then uids. Empties their mailboxes; returns the messages dropped.
    pub clear: Script,
    /// ARGV prefix. Gives back the bytes of mailboxes that expired (at most 100 a call).
    pub reap_mailboxes: Script,
    /// ARGV prefix. Every mailbox that holds messages: `[uid, messages, payload bytes,
    /// ms since its oldest message, ...]`.
    pub mailboxes: Script,
}

/// The bytes a mailbox message is counted for in Redis besides its payload (the same
/// figure as a node's own mailbox).
const PER_MESSAGE_OVERHEAD: usize = crate::core::mailbox::PER_MESSAGE_OVERHEAD;

/// Lua that empties mailbox `key` of `uid` and gives its bytes back (`mb` is the
/// prefix's mailbox key stem).
macro_rules! forget_mailbox {
    () => {
        "local size = tonumber(redis.call('HGET', mb .. 'size', uid) or '0')
         redis.call('DEL', key)
         redis.call('HDEL', mb .. 'size', uid)
         redis.call('ZREM', mb .. 'due', uid)
         if size > 0 then redis.call('DECRBY', mb .. 'bytes', size) end\n"
    };
}

impl Scripts {
    /// Compiles (hashes) every script.
    pub fn new() -> Self {
        Scripts {
            renew: Script::new(with_clock!(
                "return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])"
            )),
            reap: Script::new(with_clock!(
                "local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
                 for _, id in ipairs(dead) do
                   redis.call('DEL', ARGV[1] .. ':node:' .. id)
                   redis.call('ZREM', KEYS[1], id)
                 end
                 return dead"
            )),
            live: Script::new(with_clock!(
                "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"
            )),
            online: Script::new(with_clock!(
                "local found = {}
                 for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
                   if id ~= ARGV[2] then
                     local n = redis.call('HGET', ARGV[1] .. ':node:' .. id, ARGV[3])
                     if n then table.insert(found, id); table.insert(found, tonumber(n)) end
                   end
                 end
                 return found"
            )),
            route: Script::new(&with_clock!(
                "local others = {}
                 for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
                   if id ~= ARGV[2] then table.insert(others, id) end
                 end
                 local named = ARGV[3] == '1'
                 local ttl, size, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
                 local mb = ARGV[1] .. ':mb:'
                 local routed = {}
                 for i = 7, #ARGV, 3 do
                   local uid, payload = ARGV[i], ARGV[i + 1]
                   local count, reached, missed, held = 0, {}, {}, false
                   for _, id in ipairs(others) do
                     local n = redis.call('HGET', ARGV[1] .. ':node:' .. id, uid)
                     if n then
                       held = true
                       if redis.call('PUBLISH', ARGV[1] .. ':n:' .. id, payload) > 0 then
                         count = count + tonumber(n)
                         if named then table.insert(reached, id) end
                       elseif named then
                         table.insert(missed, id)
                       end
                     end
                   end
                   if not held and ARGV[i + 2] == '1' and ttl > 0 then
                     local key = mb .. uid
                     -- Kept without the bus header: the pushed bytes alone.
                     local raw = string.sub(payload, string.find(payload, '\\n', 1, true) + 1)
                     local cost = string.len(raw) + OVERHEAD
                     local bytes = tonumber(redis.call('GET', mb .. 'bytes') or '0')
                     local oldest = nil
                     if redis.call('XLEN', key) >= size then
                       oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
                     end
                     local freed = 0
                     if oldest then freed = string.len(oldest[2][2]) + OVERHEAD end
                     if bytes + cost > memory + freed then
                       count = -2
                     else
                       if oldest then
                         redis.call('XDEL', key, oldest[1])
                         redis.call('DECRBY', mb .. 'bytes', freed)
                         redis.call('HINCRBY', mb .. 'size', uid, -freed)
                       end
                       redis.call('XADD', key, '*', 'm', raw)
                       redis.call('PEXPIRE', key, ttl)
                       redis.call('INCRBY', mb .. 'bytes', cost)
                       redis.call('HINCRBY', mb .. 'size', uid, cost)
                       redis.call('ZADD', mb .. 'due', now + ttl, uid)
                       count = -1
                     end
                   end
                   if named then
                     table.insert(routed, {count, reached, missed})
                   else
                     table.insert(routed, count)
                   end
                 end
                 return routed"
            ).replace("OVERHEAD", &PER_MESSAGE_OVERHEAD.to_string())),
            take: Script::new(concat!(
                with_clock!(
                    "local mb, cutoff, result = ARGV[1] .. ':mb:', now - tonumber(ARGV[2]), {}
                     for i = 3, #ARGV do
                       local uid = ARGV[i]
                       local key = mb .. uid
                       local entries = redis.call('XRANGE', key, '-', '+')\n"
                ),
                forget_mailbox!(),
                "local expired, out = 0, {}
                       for _, entry in ipairs(entries) do
                         if tonumber(string.match(entry[1], '^(%d+)')) > cutoff then
                           table.insert(out, entry[2][2])
                         else
                           expired = expired + 1
                         end
                       end
                       table.insert(result, {expired, out})
                     end
                     return result"
            )),
            clear: Script::new(concat!(
                "local mb, dropped = ARGV[1] .. ':mb:', 0
                 for i = 3, #ARGV do
                   local uid = ARGV[i]
                   local key = mb .. uid
                   dropped = dropped + redis.call('XLEN', key)\n",
                forget_mailbox!(),
                "end
                 return dropped"
            )),
            mailboxes: Script::new(&with_clock!(
                "local mb, out = ARGV[1] .. ':mb:', {}
                 for _, uid in ipairs(redis.call('ZRANGE', mb .. 'due', 0, -1)) do
                   local key = mb .. uid
                   local n = redis.call('XLEN', key)
                   if n > 0 then
                     local size = tonumber(redis.call('HGET', mb .. 'size', uid) or '0')
                     local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
                     local since = now - tonumber(string.match(first[1], '^(%d+)'))
                     table.insert(out, uid)
                     table.insert(out, n)
                     table.insert(out, size - n * OVERHEAD)
                     table.insert(out, since)
                   end
                 end
                 return out"
            ).replace("OVERHEAD", &PER_MESSAGE_OVERHEAD.to_string())),
            reap_mailboxes: Script::new(concat!(
                with_clock!(
                    "local mb = ARGV[1] .. ':mb:'
                     local gone = 0
                     for _, uid in ipairs(redis.call('ZRANGEBYSCORE', mb .. 'due', '-inf', now, 'LIMIT', 0, 100)) do
                       local key = mb .. uid
                       if redis.call('EXISTS', key) == 0 then\n"
                ),
                forget_mailbox!(),
                "gone = gone + 1
                       end
                     end
                     return gone"
            )),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
