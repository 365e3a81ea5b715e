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
    /// `KEYS[1]` nodes; ARGV prefix, my id, `1` to name nodes (else `0`), then uid and
    /// payload pairs. For each pair in order, publishes the payload to the inbox of every
    /// other live node whose hash has the uid. Returns per pair the connections
    /// registered by the nodes that received it; with names, `[connections, [node ids
    /// that received it], [node ids that hold the uid but have no subscriber]]`.
    pub route: Script,
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
            route: Script::new(with_clock!(
                "local others = {}
                 for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
                   if id ~= ARGV[2] then table.insert(others, id) end
                 end
                 local named = ARGV[3] == '1'
                 local routed = {}
                 for i = 4, #ARGV, 2 do
                   local count, reached, missed = 0, {}, {}
                   for _, id in ipairs(others) do
                     local n = redis.call('HGET', ARGV[1] .. ':node:' .. id, ARGV[i])
                     if n then
                       if redis.call('PUBLISH', ARGV[1] .. ':n:' .. id, ARGV[i + 1]) > 0 then
                         count = count + tonumber(n)
                         if named then table.insert(reached, id) end
                       elseif named then
                         table.insert(missed, id)
                       end
                     end
                   end
                   if named then
                     table.insert(routed, {count, reached, missed})
                   else
                     table.insert(routed, count)
                   end
                 end
                 return routed"
            )),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}
