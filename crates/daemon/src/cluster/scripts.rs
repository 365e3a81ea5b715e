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
    /// `KEYS[1]` nodes, `KEYS[2]` settle, `KEYS[3]` the nodes that subscribe their
    /// uids' channels (this one does); ARGV id, lease ms, `1` when this node had
    /// joined before. Returns 1 when the node was not there or its lease had run out
    /// (a failover to a replica keeps the leases that nobody could renew); then, for a
    /// node that had joined, presence is unsure until every node has had a lease's time to
    /// notice the same and write its presence again (`P:settle`).
    pub renew: Script,
    /// `KEYS[1]` nodes; ARGV prefix, offline grace ms, my name, events retained, lease
    /// ms. Removes expired nodes and their hashes, puts every uid that only they held
    /// in `P:gone` (due after the grace) and, having reaped any, makes presence unsure
    /// for a lease (`P:settle`: a reaped node may come back with its pages), and
    /// drops them (and any an older node reaped) from `P:chan`; then takes the due uids of `P:gone` that no
    /// live node holds, and adds their `offline` to the events stream, once in the
    /// cluster. Returns the dead node ids, and those reaped two thirds of a
    /// lease ago or more that did not come back, whose subscriber connections
    /// the caller cuts (`P:reaped`: node id → when it was reaped).
    pub reap: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, offline grace ms, my name, events
    /// retained, then uid and count pairs. Writes this node's counts (0 deletes) to
    /// `P:node:<id>`; a uid that becomes held by no live node goes in `P:gone` (offline
    /// once the grace passes), and one that becomes held where no other live node held
    /// it gets its `online` in the events stream, unless it was in `P:gone` (back
    /// within the grace: neither event). Returns how many came online.
    pub presence: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, offline grace ms. This node leaves: its hash
    /// goes, the uids only it held go in `P:gone`, and the webhook's lease if it held
    /// it; it leaves `P:chan`.
    pub leave: Script,
    /// `KEYS[1]` nodes; no ARGV. The live node ids.
    pub live: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, uid. `[id, connections, ...]` for every other
    /// live node whose hash has the uid.
    pub online: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, `1` to name nodes (else `0`), the mailbox's TTL
    /// in ms (`0`: off), size and memory, then uid, payload and flags triples. Each push,
    /// in order, gets the id `MS-N` (N from the counter `P:seq`), put in front of its
    /// bus header (`ID {header}`), and is published to the inbox of every other live node whose hash has the
    /// uid, and with flag `v` (the pusher has `pushd.v2` connections for it) to the
    /// pusher's own. Returns per push the connections registered by the nodes that
    /// received it; with names, `[connections, [node ids that received it], [node ids that
    /// hold the uid but have no subscriber]]`. When no other live node holds the uid and
    /// the flags have `k` (no connection took it on the pusher, not transient), the pushed
    /// bytes (the payload without its bus header) wait in the uid's stream instead, and
    /// the count is -1, or -2 when every mailbox together is at the memory bound, or
    /// -3 when presence is unsure (`P:settle`, the pusher itself has no lease, or a
    /// node whose lease ran out is not reaped yet):
    /// the uid may be online on a node that has not written its presence again. A push
    /// that was delivered (flag `d`: on the pusher) to a uid with a `P:v2:<uid>` hash is
    /// kept in the stream too, marked `d`, for resumes.
    pub route: Script,
    /// ARGV prefix, TTL ms, then uid, since, age and claim quadruples (age: ms since
    /// the bind, which judges what had expired when the uid bound; claim: the bind's
    /// own name): since is empty for a raw connection, `new` for a `pushd.v2` one
    /// without `since`, `gap` for an unplaceable one, `cN` for a bound one that a node
    /// catches up after its message N, else its id `MS-N`, which places the client
    /// only if the uid's stream holds that very id. Per uid `[expired, gap,
    /// waiting, [id, payload, ...], last, place]`: the messages not yet delivered and,
    /// with a since, every one after it, oldest first; the number of the stream's
    /// newest; and the newest it holds or let go of (what a connection bound now is
    /// owed after, beyond what the take gave it).
    /// A `pushd.v2` bind makes the uid resumable (`P:v2:<uid>`), and its stream keeps
    /// everything. Any other uid's stream is emptied, and what the bind takes waits in
    /// `P:claim:<claim>` until the node confirms it with `ack`: a take whose answer
    /// never reached the node (a timeout while Redis was paused) is asked again and
    /// gets the same, and no other bind gets it too.
    pub take: Script,
    /// ARGV prefix, then uid, last and claim triples: what a take answered up to
    /// `last` was handed to a connection. A resumable uid's stream marks it handed
    /// over (`t`); the bind's claim goes.
    pub ack: Script,
    /// ARGV prefix, TTL ms, then uids. Empties their mailboxes; returns the messages dropped.
    pub clear: Script,
    /// ARGV prefix. Gives back the bytes of mailboxes that expired (at most 100 a call).
    pub reap_mailboxes: Script,
    /// ARGV prefix. Every mailbox that holds waiting messages (not only copies kept for
    /// resumes): `[uid, messages, payload bytes, ms since its oldest message, ...]`.
    pub mailboxes: Script,
    /// The scripts of groups.
    pub groups: super::group_scripts::GroupScripts,
}

/// Lua shared by the presence scripts: `tell` adds an `online` or `offline`
/// event to the cluster's stream (`cluster::events`; its id is the entry's);
/// `held_elsewhere` says whether a live node other than `me` (`''` for none)
/// holds `uid`; and the end of node `id`'s hash, whose uids that no
/// live node holds go in `P:gone` (offline once `grace` passes), for a dead
/// node (`reap`) and a leaving one (`leave`) alike.
const PRESENCE_LUA: &str = "local function tell(prefix, retain, node, now, kind, uid)
  redis.call('XADD', prefix .. ':events', 'MAXLEN', '~', retain, '*', 't', kind, 'e',
    '{\"type\":\"' .. kind .. '\",\"uid\":' .. cjson.encode(uid) .. ',\"node\":' .. cjson.encode(node)
    .. ',\"at_ms\":' .. string.format('%d', now) .. '}')
end
local function held_elsewhere(nodes, prefix, now, me, uid)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', nodes, '(' .. now, '+inf')) do
    if id ~= me and redis.call('HEXISTS', prefix .. ':node:' .. id, uid) == 1 then return true end
  end
  return false
end
local function drop_node(nodes, prefix, now, grace, id)
  local hash = prefix .. ':node:' .. id
  for _, uid in ipairs(redis.call('HKEYS', hash)) do
    if not held_elsewhere(nodes, prefix, now, id, uid) then
      redis.call('ZADD', prefix .. ':gone', 'NX', now + grace, uid)
    end
  end
  redis.call('DEL', hash)
end
";

/// Lua shared by the scripts that number pushes and keep them in the uids'
/// streams (the route and the group push).
///
/// `numbers` takes `n` numbers from the cluster's counter: it returns the
/// clock to stamp ids with (`ms`, never going back, so that every stream
/// accepts them in order) and the number before the first. N never starts
/// over: it is at least the clock in microseconds, so a Redis restarted empty
/// (or from an old snapshot) goes on above every N it gave before (unless it
/// gave more than a million a second).
///
/// `keep_in_stream` keeps the pushed bytes `raw` (message `id`, number `seq`)
/// in `uid`'s stream: waiting for the uid (`waiting`), or else as a delivered
/// copy for resumes, marked `d`. At the mailbox's size its oldest entry goes;
/// over the memory bound nothing is kept, and a resumable uid's stream notes
/// that it misses `seq`. Returns -1 when it waits, -2 when it was to wait but
/// the mailboxes are at their memory bound, else 0.
const STREAM_LUA: &str = "local function numbers(prefix, now, n)
  local clock = prefix .. ':clock'
  now = math.max(now, tonumber(redis.call('GET', clock) or '0'))
  redis.call('SET', clock, now)
  local counter = prefix .. ':seq'
  local seq = redis.call('INCRBY', counter, n) - n
  local floor = now * 1000
  if seq < floor then
    seq = floor
    redis.call('SET', counter, string.format('%d', floor + n))
  end
  return now, seq
end
local function keep_in_stream(prefix, uid, id, seq, raw, waiting, now, ttl, size, memory)
  local mb = prefix .. ':mb:'
  local key, v2 = mb .. uid, prefix .. ':v2:' .. uid
  local cost = string.len(raw) + OVERHEAD
  local bytes = tonumber(redis.call('GET', mb .. 'bytes') or '0')
  local oldest = nil
  if redis.call('XLEN', key) >= size then
    oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
  end
  local freed = 0
  if oldest then freed = string.len(oldest[2][2]) + OVERHEAD end
  if bytes + cost > memory + freed then
    if waiting then return -2 end
    if redis.call('EXISTS', v2) == 1 then redis.call('HSET', v2, 'l', string.format('%d', seq)) end
    return 0
  end
  if oldest then
    redis.call('XDEL', key, oldest[1])
    redis.call('DECRBY', mb .. 'bytes', freed)
    redis.call('HINCRBY', mb .. 'size', uid, -freed)
    if redis.call('EXISTS', v2) == 1 then
      redis.call('HSET', v2, 'l', string.match(oldest[1], '-(%d+)$'))
    end
  end
  if waiting then
    redis.call('XADD', key, id, 'm', raw)
  else
    redis.call('XADD', key, id, 'm', raw, 'd', '1')
  end
  -- Kept past its TTL for a while, so that a bind within the TTL whose take
  -- Redis runs late (a pause) still finds it.
  redis.call('PEXPIRE', key, ttl + KEEPALIVE)
  redis.call('INCRBY', mb .. 'bytes', cost)
  redis.call('HINCRBY', mb .. 'size', uid, cost)
  redis.call('ZADD', mb .. 'due', now + ttl, uid)
  if waiting then return -1 end
  return 0
end
";

/// The bytes a mailbox message is counted for in Redis besides its payload (the same
/// figure as a node's own mailbox).
const PER_MESSAGE_OVERHEAD: usize = crate::core::mailbox::PER_MESSAGE_OVERHEAD;

/// How much longer than the mailbox's TTL a resumable uid's `P:v2:<uid>` lives after
/// its last refresh; nodes refresh theirs at half this interval while a `pushd.v2`
/// connection of the uid is bound, so it lapses only a TTL after the last one went.
/// A mailbox's stream outlives its newest message's TTL by as much, so that a take
/// that Redis runs late still finds what had not expired at the bind.
pub const KEEPALIVE_MS: u64 = 10_000;

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

/// Lua that counts the waiting messages of `uid` (not the delivered copies kept for
/// resumes) into `n` and `bytes`, with `oldest` the ms of the first.
macro_rules! count_waiting {
    () => {
        "local taken = tonumber(redis.call('HGET', ARGV[1] .. ':v2:' .. uid, 't') or '0')
         local n, bytes, oldest = 0, 0, nil
         for _, entry in ipairs(redis.call('XRANGE', mb .. uid, '-', '+')) do
           local ms, seq = string.match(entry[1], '^(%d+)-(%d+)$')
           if entry[2][3] ~= 'd' and tonumber(seq) > taken then
             n = n + 1
             bytes = bytes + string.len(entry[2][2])
             oldest = oldest or tonumber(ms)
           end
         end\n"
    };
}

/// [`STREAM_LUA`] with its constants in.
pub(super) fn stream_lua() -> String {
    STREAM_LUA
        .replace("OVERHEAD", &PER_MESSAGE_OVERHEAD.to_string())
        .replace("KEEPALIVE", &KEEPALIVE_MS.to_string())
}

impl Scripts {
    /// Loads every script into Redis, so that the first call of each (a bind's presence
    /// write, say) is one `EVALSHA` and not three round trips (`NOSCRIPT`, load, again).
    pub async fn load(&self, conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<()> {
        let all = [
            &self.renew,
            &self.reap,
            &self.presence,
            &self.leave,
            &self.live,
            &self.online,
            &self.route,
            &self.take,
            &self.ack,
            &self.clear,
            &self.reap_mailboxes,
            &self.mailboxes,
        ];
        for script in all.into_iter().chain(self.groups.all()) {
            script.load_async(conn).await?;
        }
        Ok(())
    }

    /// Compiles (hashes) every script.
    pub fn new() -> Self {
        Scripts {
            renew: Script::new(with_clock!(
                "local was = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
                 redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
                 redis.call('SADD', KEYS[3], ARGV[1])
                 -- Missing, or expired: a Redis that lost it, or one that kept it
                 -- while nobody could renew (a failover to a replica, a pause).
                 local gone = was <= now
                 if gone and ARGV[3] == '1' then
                   redis.call('SET', KEYS[2], now + tonumber(ARGV[2]), 'PX', tonumber(ARGV[2]))
                 end
                 return gone and 1 or 0"
            )),
            reap: Script::new(&format!(
                "{PRESENCE_LUA}{}",
                with_clock!(
                    "local gone, grace = ARGV[1] .. ':gone', tonumber(ARGV[2])
                     local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
                     for _, id in ipairs(dead) do redis.call('ZREM', KEYS[1], id) end
                     for _, id in ipairs(dead) do drop_node(KEYS[1], ARGV[1], now, grace, id) end
                     local chan = ARGV[1] .. ':chan'
                     for _, id in ipairs(redis.call('SMEMBERS', chan)) do
                       if not redis.call('ZSCORE', KEYS[1], id) then redis.call('SREM', chan, id) end
                     end
                     -- A reaped node's subscriber connection may outlive it (a
                     -- machine gone without closing it): still counted on its
                     -- uids' channels. Unless the node is back, it is cut before
                     -- presence is sure again (the reap's settle, a lease).
                     local reaped, cut = ARGV[1] .. ':reaped', {}
                     for _, id in ipairs(dead) do redis.call('HSET', reaped, id, now) end
                     local lease = tonumber(ARGV[5])
                     local pending = redis.call('HGETALL', reaped)
                     for i = 1, #pending, 2 do
                       local id, at = pending[i], tonumber(pending[i + 1])
                       if redis.call('ZSCORE', KEYS[1], id) then
                         redis.call('HDEL', reaped, id)
                       elseif now >= at + lease * 2 / 3 then
                         redis.call('HDEL', reaped, id)
                         table.insert(cut, id)
                       end
                     end
                     if #dead > 0 then
                       -- A node reaped may only be slow (paused, upgrading, cut off): its
                       -- pages may still be open. For a lease, a uid nobody seems to hold
                       -- is not queued for, but answered fail.
                       local settle, lease = ARGV[1] .. ':settle', tonumber(ARGV[5])
                       if now + lease > tonumber(redis.call('GET', settle) or '0') then
                         redis.call('SET', settle, now + lease, 'PX', lease)
                       end
                     end
                     for _, uid in ipairs(redis.call('ZRANGEBYSCORE', gone, '-inf', now, 'LIMIT', 0, 1000)) do
                       redis.call('ZREM', gone, uid)
                       if not held_elsewhere(KEYS[1], ARGV[1], now, '', uid) then
                         tell(ARGV[1], ARGV[4], ARGV[3], now, 'offline', uid)
                       end
                     end
                     return {dead, cut}"
                )
            )),
            presence: Script::new(&format!(
                "{PRESENCE_LUA}{}",
                with_clock!(
                    "local me, grace = ARGV[2], tonumber(ARGV[3])
                     local mine, gone = ARGV[1] .. ':node:' .. me, ARGV[1] .. ':gone'
                     local online = 0
                     for i = 6, #ARGV, 2 do
                       local uid, n = ARGV[i], tonumber(ARGV[i + 1])
                       local was = redis.call('HEXISTS', mine, uid) == 1
                       if n > 0 then redis.call('HSET', mine, uid, n) else redis.call('HDEL', mine, uid) end
                       if was ~= (n > 0) and not held_elsewhere(KEYS[1], ARGV[1], now, me, uid) then
                         if n > 0 then
                           if redis.call('ZREM', gone, uid) == 0 then
                             tell(ARGV[1], ARGV[5], ARGV[4], now, 'online', uid)
                             online = online + 1
                           end
                         else
                           redis.call('ZADD', gone, now + grace, uid)
                         end
                       end
                     end
                     return online"
                )
            )),
            leave: Script::new(&format!(
                "{PRESENCE_LUA}{}",
                with_clock!(
                    "redis.call('ZREM', KEYS[1], ARGV[2])
                     redis.call('SREM', ARGV[1] .. ':chan', ARGV[2])
                     drop_node(KEYS[1], ARGV[1], now, tonumber(ARGV[3]), ARGV[2])
                     -- Another node takes over the webhook at once.
                     if redis.call('GET', ARGV[1] .. ':hook') == ARGV[2] then
                       redis.call('DEL', ARGV[1] .. ':hook')
                     end
                     return 0"
                )
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
            route: Script::new(&format!(
                "{}{}",
                stream_lua(),
                with_clock!(
                "local others, unsure = {}, true
                 for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
                   if id ~= ARGV[2] then table.insert(others, id) else unsure = false end
                 end
                 -- Without its own lease, or while nodes write their presence again,
                 -- a uid nobody seems to hold may be online: not queued, but -3.
                 unsure = unsure or now < tonumber(redis.call('GET', ARGV[1] .. ':settle') or '0')
                 -- A node whose lease ran out and that nobody reaped yet may only be
                 -- slow: its pages may be open.
                 unsure = unsure or #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1) > 0
                 local named = ARGV[3] == '1'
                 local ttl, size, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
                 local n = (#ARGV - 6) / 3
                 local seq
                 now, seq = numbers(ARGV[1], now, n)
                 local stem = now .. '-'
                 local routed = {}
                 for i = 7, #ARGV, 3 do
                   seq = seq + 1
                   local uid, payload, flags = ARGV[i], ARGV[i + 1], ARGV[i + 2]
                   local keep, here = flags == 'k', flags == 'd' or flags == 'dv'
                   -- `%d`: Lua would print a number this large with an exponent.
                   local id = stem .. string.format('%d', seq)
                   -- `ID {header}`: the node reads the id in front of the header line.
                   payload = id .. ' ' .. payload
                   local count, reached, missed, held = 0, {}, {}, false
                   for _, node in ipairs(others) do
                     local n = redis.call('HGET', ARGV[1] .. ':node:' .. node, uid)
                     if n then
                       held = true
                       if redis.call('PUBLISH', ARGV[1] .. ':n:' .. node, payload) > 0 then
                         count = count + tonumber(n)
                         if named then table.insert(reached, node) end
                       elseif named then
                         table.insert(missed, node)
                       end
                     end
                   end
                   if flags == 'v' or flags == 'dv' then
                     -- The pusher's own pushd.v2 connections get it in this order too.
                     redis.call('PUBLISH', ARGV[1] .. ':n:' .. ARGV[2], payload)
                   end
                   local v2 = (held or here) and ttl > 0 and ARGV[1] .. ':v2:' .. uid
                   local waiting = not held and keep and ttl > 0
                   if waiting and unsure then
                     waiting = false
                     count = -3
                   end
                   local resumable = v2 and redis.call('EXISTS', v2) == 1
                   if waiting or resumable then
                     -- Kept without the bus header: the pushed bytes alone.
                     local raw = string.sub(payload, string.find(payload, '\\n', 1, true) + 1)
                     local kept = keep_in_stream(ARGV[1], uid, id, seq, raw, waiting, now, ttl, size, memory)
                     if kept ~= 0 then count = kept end
                   end
                   if named then
                     table.insert(routed, {count, reached, missed})
                   else
                     table.insert(routed, count)
                   end
                 end
                 return routed"
            ))),
            take: Script::new(&concat!(
                with_clock!(
                    "local mb, ttl, result = ARGV[1] .. ':mb:', tonumber(ARGV[2]), {}
                     for i = 3, #ARGV, 4 do
                       local uid, since = ARGV[i], ARGV[i + 1]
                       local cutoff = now - tonumber(ARGV[i + 2]) - ttl
                       local key, v2 = mb .. uid, ARGV[1] .. ':v2:' .. uid
                       local claim = ARGV[1] .. ':claim:' .. ARGV[i + 3]
                       local was_resumable = redis.call('EXISTS', v2) == 1
                       if since ~= '' and not was_resumable then
                         -- From now on the uid's pushes are kept for resumes; what came
                         -- before may be gone.
                         redis.call('HSET', v2, 'l', redis.call('GET', ARGV[1] .. ':seq') or '0')
                       end
                       local resumable = redis.call('EXISTS', v2) == 1
                       -- Asked again (the answer was lost): what this bind claimed.
                       local claimed = redis.call('EXISTS', claim) == 1
                       local taken = tonumber(redis.call('HGET', v2, 't') or '0')
                       local entries = redis.call('XRANGE', claimed and claim or key, '-', '+')
                       local lost = tonumber(redis.call('HGET', v2, 'l') or '0')
                       -- A since places the client only if it is an id this uid was
                       -- given (one its stream holds, or the last it let go of); any
                       -- other claim (another uid's id, one from the future) is a gap,
                       -- then everything held.
                       local since_ms, since_n = string.match(since, '^(%d+)-(%d+)$')
                       -- `cN`: a node catching a bound connection up after N (its own
                       -- record, trusted).
                       local catch_up = tonumber(string.match(since, '^c(%d+)$'))
                       local after = tonumber(since_n) or catch_up or (since == 'gap' and 0) or nil
                       local gap = since == 'gap' or (catch_up ~= nil and lost > catch_up)
                       if since_n then
                         -- The whole id must be one the stream holds: N alone starts
                         -- over when Redis does. A broadcast's `0-N` repeats the N of
                         -- the connection's last message.
                         local issued = false
                         for _, entry in ipairs(entries) do
                           if entry[1] == since or (since_ms == '0'
                               and tonumber(string.match(entry[1], '-(%d+)$')) == after) then
                             issued = true
                             break
                           end
                         end
                         if issued then gap = lost > after else gap, after = true, 0 end
                       end
                       local expired, waiting, out, last = 0, 0, {}, taken
                       for _, entry in ipairs(entries) do
                         local ms, n = string.match(entry[1], '^(%d+)-(%d+)$')
                         ms, n = tonumber(ms), tonumber(n)
                         local delivered = entry[2][3] == 'd' or n <= taken
                         -- With a since, what is after it; what was never delivered
                         -- always (a claim never discards a waiting message).
                         local resumed = after ~= nil and n > after
                         if resumed or not delivered then
                           if ms > cutoff then
                             table.insert(out, entry[1])
                             table.insert(out, entry[2][2])
                             if not delivered then waiting = waiting + 1 end
                           else
                             if not delivered then expired = expired + 1 end
                             if resumed then gap = true end
                           end
                         end
                         if n > last then last = n end
                       end
                       if resumable then
                         redis.call('PEXPIRE', v2, ttl + KEEPALIVE)
                       elseif not claimed then
                         -- A uid that is not resumable keeps nothing once taken. What
                         -- this bind takes is its own from now on, in its claim, until
                         -- its node confirms the hand-over (`ack`): asked again, it
                         -- gets the same; no other bind can take it too.
                         for j = 1, #out, 2 do
                           redis.call('XADD', claim, out[j], 'm', out[j + 1])
                         end
                         if #out > 0 then redis.call('PEXPIRE', claim, ttl + KEEPALIVE) end\n"
                ),
                forget_mailbox!(),
                "end
                       table.insert(result, {expired, gap and 1 or 0, waiting, out, string.format('%d', last),
                         string.format('%d', math.max(last, lost))})
                     end
                     return result"
            )
            .replace("KEEPALIVE", &KEEPALIVE_MS.to_string())),
            ack: Script::new(
                "for i = 2, #ARGV, 3 do
                   local uid, last = ARGV[i], tonumber(ARGV[i + 1])
                   local v2 = ARGV[1] .. ':v2:' .. uid
                   if redis.call('EXISTS', v2) == 1
                       and last > tonumber(redis.call('HGET', v2, 't') or '0') then
                     redis.call('HSET', v2, 't', ARGV[i + 1])
                   end
                   redis.call('DEL', ARGV[1] .. ':claim:' .. ARGV[i + 2])
                 end
                 return 0",
            ),
            clear: Script::new(concat!(
                "local mb, dropped = ARGV[1] .. ':mb:', 0
                 for i = 3, #ARGV do
                   local uid = ARGV[i]
                   local key = mb .. uid\n",
                count_waiting!(),
                "dropped = dropped + n
                   redis.call('DEL', ARGV[1] .. ':v2:' .. uid)\n",
                forget_mailbox!(),
                "end
                 return dropped"
            )),
            mailboxes: Script::new(concat!(
                with_clock!(
                    "local mb, out = ARGV[1] .. ':mb:', {}
                     for _, uid in ipairs(redis.call('ZRANGE', mb .. 'due', 0, -1)) do\n"
                ),
                count_waiting!(),
                "if n > 0 then
                     table.insert(out, uid)
                     table.insert(out, n)
                     table.insert(out, bytes)
                     table.insert(out, now - oldest)
                   end
                 end
                 return out"
            )),
            reap_mailboxes: Script::new(concat!(
                with_clock!(
                    "local mb = ARGV[1] .. ':mb:'
                     local gone = 0
                     for _, uid in ipairs(redis.call('ZRANGEBYSCORE', mb .. 'due', '-inf', now, 'LIMIT', 0, 100)) do
                       local key = mb .. uid
                       if redis.call('EXISTS', key) == 0 then\n"
                ),
                forget_mailbox!(),
                "local v2 = ARGV[1] .. ':v2:' .. uid
                       if redis.call('EXISTS', v2) == 1 then
                         redis.call('HSET', v2, 'l', redis.call('GET', ARGV[1] .. ':seq') or '0')
                       end
                       gone = gone + 1
                       end
                     end
                     return gone"
            )),
            groups: super::group_scripts::GroupScripts::new(),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
