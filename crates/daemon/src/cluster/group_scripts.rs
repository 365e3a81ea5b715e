//! The Lua of groups in cluster mode. Memberships live in Redis:
//!
//! - `P:g:<group>`: hash, member uid → when the membership ends (ms on Redis's
//!   clock; `0`: never);
//! - `P:ug:<uid>`: hash, the uid's groups → the same deadlines;
//! - `P:gdue`: sorted set of `group \n uid` by deadline, for memberships with a
//!   TTL (names have no control characters, so `\n` splits them);
//! - `P:groups`: set of the groups that have members; `P:gcount`: memberships
//!   in all groups together (`--max-memberships` is a cluster-wide bound).
//!
//! A membership whose deadline passed counts for nothing at once; the expirer
//! (every node, at each lease renewal) removes it within a third of a lease.

use redis::Script;

use super::scripts::stream_lua;

/// Redis's `TIME` in ms, as `now`.
const CLOCK: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Lua shared by the scripts that look members up in presence: `alive`
/// (whether a deadline read from a membership hash has not passed), and
/// `on_node`, which calls `found(i, connections)` for each uid of `uids`
/// that node `node` holds, asking Redis for a thousand at a time.
const MEMBERS_LUA: &str = "local function alive(deadline, now)
  local until_ms = tonumber(deadline)
  return until_ms == 0 or until_ms > now
end
local function on_node(prefix, node, uids, found)
  local hash = prefix .. ':node:' .. node
  for first = 1, #uids, 1000 do
    local last = math.min(first + 999, #uids)
    local counts = redis.call('HMGET', hash, unpack(uids, first, last))
    for j = 1, last - first + 1 do
      if counts[j] then found(first + j - 1, tonumber(counts[j])) end
    end
  end
end
local function live_nodes(nodes, now)
  return redis.call('ZRANGEBYSCORE', nodes, '(' .. now, '+inf')
end
";

/// The scripts of groups.
#[derive(Debug)]
pub struct GroupScripts {
    /// ARGV prefix, group, TTL ms (empty: none given), `--max-groups-per-uid`,
    /// `--max-memberships`, then uids. Returns `[added, already, [uid, why,
    /// ...]]` with `why` `u` (the uid is in too many groups) or `t` (too many
    /// memberships). A TTL given refreshes an existing membership's; none
    /// given leaves it as it was.
    pub add: Script,
    /// ARGV prefix, group, then uids. Returns how many were members.
    pub remove: Script,
    /// ARGV prefix, group. Removes the group; returns how many members it had.
    pub drop: Script,
    /// `KEYS[1]` nodes; ARGV prefix, group, cursor, mode. One `HSCAN` step
    /// over the group's members with their connections on every live node:
    /// `[cursor, rows]`, rows `uid, connections, ms left (-1: no TTL)` in
    /// mode `m`, or the uids with a connection in mode `o`.
    pub scan: Script,
    /// ARGV prefix, uid. The uid's groups.
    pub of_uid: Script,
    /// ARGV prefix. Ends up to 1,000 memberships whose deadline passed;
    /// returns how many.
    pub expire: Script,
    /// `KEYS[1]` nodes; ARGV prefix, my id, group, the mailbox's TTL ms (`0`:
    /// off), size and memory, `1` when transient, the bus header up to its
    /// uid list, the payload, then the pusher's banned uids.
    ///
    /// One number for the push, then one bus message per live node that
    /// holds members (this one's included): `ID {header "members":N}`, a
    /// line per member it holds, and the payload, so a group of any size
    /// crosses the bus once per node. A
    /// member held nowhere keeps it in its mailbox (not when transient or
    /// banned, or while presence is unsure); a held one that is resumable
    /// keeps a copy for resumes. Returns `[members, connections on the other
    /// nodes reached, members queued, [nodes reached], [nodes that hold
    /// members but have no subscriber], members not queued since presence is
    /// unsure, members not queued at the memory bound]`.
    pub push: Script,
}

impl GroupScripts {
    /// Compiles (hashes) every script.
    pub fn new() -> Self {
        GroupScripts {
            add: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local prefix, group, ttl = ARGV[1], ARGV[2], ARGV[3]
                 local gkey, due, count = prefix .. ':g:' .. group, prefix .. ':gdue', prefix .. ':gcount'
                 local until_ms = 0
                 if ttl ~= '' then until_ms = now + tonumber(ttl) end
                 local per_uid, most = tonumber(ARGV[4]), tonumber(ARGV[5])
                 local total = tonumber(redis.call('GET', count) or '0')
                 local added, already, refused = 0, 0, {}
                 for i = 6, #ARGV do
                   local uid = ARGV[i]
                   local ukey, entry = prefix .. ':ug:' .. uid, group .. '\\n' .. uid
                   local current = redis.call('HGET', gkey, uid)
                   local member = current and alive(current, now)
                   local counted = current ~= false
                   local write = false
                   if member then
                     already = already + 1
                     write = ttl ~= ''
                   elseif not counted and total >= most then
                     table.insert(refused, uid); table.insert(refused, 't')
                   elseif not counted and redis.call('HLEN', ukey) >= per_uid then
                     table.insert(refused, uid); table.insert(refused, 'u')
                   else
                     -- New, or back before the expirer removed it (counted once).
                     if not counted then total = total + 1 end
                     added = added + 1
                     write = true
                   end
                   if write then
                     redis.call('HSET', gkey, uid, until_ms)
                     redis.call('HSET', ukey, group, until_ms)
                     if until_ms > 0 then
                       redis.call('ZADD', due, until_ms, entry)
                     else
                       redis.call('ZREM', due, entry)
                     end
                   end
                 end
                 if added > 0 then
                   redis.call('SET', count, total)
                   redis.call('SADD', prefix .. ':groups', group)
                 end
                 return {added, already, refused}"
            )),
            remove: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local prefix, group = ARGV[1], ARGV[2]
                 local gkey = prefix .. ':g:' .. group
                 local removed, gone = 0, 0
                 for i = 3, #ARGV do
                   local uid = ARGV[i]
                   local current = redis.call('HGET', gkey, uid)
                   if current then
                     if alive(current, now) then removed = removed + 1 end
                     gone = gone + 1
                     redis.call('HDEL', gkey, uid)
                     redis.call('HDEL', prefix .. ':ug:' .. uid, group)
                     redis.call('ZREM', prefix .. ':gdue', group .. '\\n' .. uid)
                   end
                 end
                 if gone > 0 then redis.call('DECRBY', prefix .. ':gcount', gone) end
                 if redis.call('EXISTS', gkey) == 0 then redis.call('SREM', prefix .. ':groups', group) end
                 return removed"
            )),
            drop: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local prefix, group = ARGV[1], ARGV[2]
                 local gkey = prefix .. ':g:' .. group
                 local all = redis.call('HGETALL', gkey)
                 local removed = 0
                 for i = 1, #all, 2 do
                   local uid, deadline = all[i], all[i + 1]
                   if alive(deadline, now) then removed = removed + 1 end
                   redis.call('HDEL', prefix .. ':ug:' .. uid, group)
                   if deadline ~= '0' then
                     redis.call('ZREM', prefix .. ':gdue', group .. '\\n' .. uid)
                   end
                 end
                 if #all > 0 then redis.call('DECRBY', prefix .. ':gcount', #all / 2) end
                 redis.call('DEL', gkey)
                 redis.call('SREM', prefix .. ':groups', group)
                 return removed"
            )),
            scan: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local prefix, mode = ARGV[1], ARGV[4]
                 local step = redis.call('HSCAN', prefix .. ':g:' .. ARGV[2], ARGV[3], 'COUNT', 1000)
                 local uids, left, conns = {}, {}, {}
                 for i = 1, #step[2], 2 do
                   if alive(step[2][i + 1], now) then
                     table.insert(uids, step[2][i])
                     local until_ms = tonumber(step[2][i + 1])
                     table.insert(left, until_ms == 0 and -1 or until_ms - now)
                     table.insert(conns, 0)
                   end
                 end
                 if #uids > 0 then
                   for _, node in ipairs(live_nodes(KEYS[1], now)) do
                     on_node(prefix, node, uids, function(i, n) conns[i] = conns[i] + n end)
                   end
                 end
                 local rows = {}
                 for i, uid in ipairs(uids) do
                   if mode == 'm' then
                     table.insert(rows, uid); table.insert(rows, conns[i]); table.insert(rows, left[i])
                   elseif conns[i] > 0 then
                     table.insert(rows, uid)
                   end
                 end
                 return {step[1], rows}"
            )),
            of_uid: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local all = redis.call('HGETALL', ARGV[1] .. ':ug:' .. ARGV[2])
                 local groups = {}
                 for i = 1, #all, 2 do
                   if alive(all[i + 1], now) then table.insert(groups, all[i]) end
                 end
                 return groups"
            )),
            expire: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}",
                "local prefix = ARGV[1]
                 local due = prefix .. ':gdue'
                 local ended = 0
                 for _, entry in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, 1000)) do
                   redis.call('ZREM', due, entry)
                   local group, uid = string.match(entry, '^(.-)\\n(.*)$')
                   local gkey = prefix .. ':g:' .. group
                   local current = redis.call('HGET', gkey, uid)
                   if current and not alive(current, now) then
                     redis.call('HDEL', gkey, uid)
                     redis.call('HDEL', prefix .. ':ug:' .. uid, group)
                     redis.call('DECRBY', prefix .. ':gcount', 1)
                     if redis.call('EXISTS', gkey) == 0 then redis.call('SREM', prefix .. ':groups', group) end
                     ended = ended + 1
                   end
                 end
                 return ended"
            )),
            push: Script::new(&format!(
                "{CLOCK}{MEMBERS_LUA}{}{}",
                stream_lua(),
                "local prefix, me = ARGV[1], ARGV[2]
                 local ttl, size, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
                 local transient, header, payload = ARGV[7] == '1', ARGV[8], ARGV[9]
                 local live, unsure = live_nodes(KEYS[1], now), true
                 for _, id in ipairs(live) do
                   if id == me then unsure = false end
                 end
                 -- Without its own lease, or while nodes write their presence again,
                 -- a member nobody seems to hold may be online: not queued.
                 unsure = unsure or now < tonumber(redis.call('GET', prefix .. ':settle') or '0')
                 -- A node whose lease ran out and that nobody reaped yet may only be
                 -- slow: its pages may be open.
                 unsure = unsure or #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1) > 0
                 local members = {}
                 local all = redis.call('HGETALL', prefix .. ':g:' .. ARGV[3])
                 for i = 1, #all, 2 do
                   if alive(all[i + 1], now) then table.insert(members, all[i]) end
                 end
                 if #members == 0 then return {0, 0, 0, {}, {}, 0, 0} end
                 local seq
                 now, seq = numbers(prefix, now, 1)
                 seq = seq + 1
                 -- `%d`: Lua would print a number this large with an exponent.
                 local id = now .. '-' .. string.format('%d', seq)
                 local held, others, reached, missed = {}, 0, {}, {}
                 for _, node in ipairs(live) do
                   local here, connections = {}, 0
                   on_node(prefix, node, members, function(i, n)
                     held[i] = true
                     table.insert(here, members[i])
                     connections = connections + n
                   end)
                   if #here > 0 then
                     -- The count ends the header; a line per member, then the payload.
                     table.insert(here, payload)
                     local message = id .. ' ' .. header .. (#here - 1) .. '}\\n' .. table.concat(here, '\\n')
                     if redis.call('PUBLISH', prefix .. ':n:' .. node, message) > 0 then
                       table.insert(reached, node)
                       if node ~= me then others = others + connections end
                     else
                       table.insert(missed, node)
                     end
                   end
                 end
                 local queued, not_sure, over = 0, 0, 0
                 if ttl > 0 then
                   local banned = {}
                   for i = 10, #ARGV do banned[ARGV[i]] = true end
                   local resumable = {}
                   for i, uid in ipairs(members) do
                     if held[i] then
                       table.insert(resumable, uid)
                     elseif not transient and not banned[uid] then
                       if unsure then
                         not_sure = not_sure + 1
                       else
                         local kept = keep_in_stream(prefix, uid, id, seq, payload, true, now, ttl, size, memory)
                         if kept == -1 then queued = queued + 1 elseif kept == -2 then over = over + 1 end
                       end
                     end
                   end
                   -- Held members that are resumable keep a copy for resumes; most
                   -- are not, so a thousand are asked about at once first.
                   for first = 1, #resumable, 1000 do
                     local last = math.min(first + 999, #resumable)
                     local keys = {}
                     for j = first, last do table.insert(keys, prefix .. ':v2:' .. resumable[j]) end
                     if redis.call('EXISTS', unpack(keys)) > 0 then
                       for j = first, last do
                         if redis.call('EXISTS', keys[j - first + 1]) == 1 then
                           keep_in_stream(prefix, resumable[j], id, seq, payload, false, now, ttl, size, memory)
                         end
                       end
                     end
                   end
                 end
                 return {#members, others, queued, reached, missed, not_sure, over}"
            )),
        }
    }

    /// Every script, for loading into Redis.
    pub fn all(&self) -> [&Script; 7] {
        [
            &self.add,
            &self.remove,
            &self.drop,
            &self.scan,
            &self.of_uid,
            &self.expire,
            &self.push,
        ]
    }
}

impl Default for GroupScripts {
    fn default() -> Self {
        Self::new()
    }
}
