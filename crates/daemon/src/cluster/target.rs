//! Which Redis a node talks to: the one `--cluster` names, or the master that
//! Redis Sentinel names for `redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER`.
//!
//! With Sentinel the master is asked of the sentinels at start and again at
//! every lease renewal (`Cluster::follow_master`); when a failover moved it,
//! the node's connections go to the new master and the node joins it again
//! (lease, presence, subscription), as after any Redis outage.

use anyhow::{Context, bail};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};

/// Where the master comes from.
pub(crate) enum Target {
    /// One Redis, by its URL.
    Direct(redis::Client),
    /// The master of `master`, as the sentinels say.
    Sentinel {
        sentinels: tokio::sync::Mutex<Sentinel>,
        master: String,
        /// Credentials and database for the master itself.
        node: SentinelNodeConnectionInfo,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Direct(_) => f.write_str("Direct"),
            Target::Sentinel { master, .. } => write!(f, "Sentinel({master})"),
        }
    }
}

/// The default port of a sentinel.
const SENTINEL_PORT: u16 = 26379;

impl Target {
    /// Reads `--cluster`'s URL.
    pub(crate) fn parse(url: &str) -> anyhow::Result<Target> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return Self::sentinel(rest);
        }
        if url.starts_with("rediss+sentinel://") || url.starts_with("rediss://") {
            bail!(
                "TLS to Redis is not built into this pushd; reach Redis over a local TLS \
                 tunnel (stunnel, a sidecar) and give its plain address"
            );
        }
        let client = redis::Client::open(url).context("not a Redis URL")?;
        Ok(Target::Direct(client))
    }

    /// `[USER:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[?db=N]`.
    fn sentinel(rest: &str) -> anyhow::Result<Target> {
        let (addresses, path) = rest
            .split_once('/')
            .context("no master name: redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER")?;
        let (master, query) = path.split_once('?').unwrap_or((path, ""));
        if master.is_empty() || master.contains('/') {
            bail!("no master name after the sentinels' addresses (…/MASTER)");
        }
        let (userinfo, addresses) = match addresses.rsplit_once('@') {
            Some((userinfo, addresses)) => (Some(userinfo), addresses),
            None => (None, addresses),
        };
        let sentinels: Vec<String> = addresses
            .split(',')
            .map(|address| {
                let address = address.trim();
                let (host, port) = match address.rsplit_once(':') {
                    Some((host, port)) => {
                        let port: u16 = port
                            .parse()
                            .with_context(|| format!("{address:?}: the port is not a number"))?;
                        (host, port)
                    }
                    None => (address, SENTINEL_PORT),
                };
                if host.is_empty() {
                    bail!("a sentinel without a host in {addresses:?}");
                }
                Ok(format!("redis://{host}:{port}/"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut redis = redis::RedisConnectionInfo::default();
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
            if !user.is_empty() {
                redis = redis.set_username(percent_decoded(user));
            }
            redis = redis.set_password(percent_decoded(password));
        }
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("db", db)) => {
                    let db: i64 = db.parse().with_context(|| format!("db={db:?}"))?;
                    redis = redis.set_db(db);
                }
                _ => bail!("unknown parameter {pair:?} (only db=N)"),
            }
        }
        let sentinel = Sentinel::build(sentinels).context("the sentinels' addresses")?;
        Ok(Target::Sentinel {
            sentinels: tokio::sync::Mutex::new(sentinel),
            master: master.to_owned(),
            node: SentinelNodeConnectionInfo::default().set_redis_connection_info(redis),
        })
    }

    /// The client of a single Redis; `None` with Sentinel, whose master is
    /// found by [`Target::master`].
    pub(crate) fn direct(&self) -> Option<&redis::Client> {
        match self {
            Target::Direct(client) => Some(client),
            Target::Sentinel { .. } => None,
        }
    }

    /// With Sentinel: a client for the master the sentinels name now (the
    /// master itself confirms its role), and its address.
    pub(crate) async fn master(&self) -> Option<redis::RedisResult<(redis::Client, String)>> {
        let Target::Sentinel {
            sentinels,
            master,
            node,
        } = self
        else {
            return None;
        };
        let client = sentinels
            .lock()
            .await
            .async_master_for(master, Some(node))
            .await;
        Some(client.map(|client| {
            let address = client.get_connection_info().addr().to_string();
            (client, address)
        }))
    }
}

/// `%XX` sequences of a URL's user info, decoded (a password may hold `@` or `:`).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_are_read_and_bad_ones_refused_with_the_reason() {
        let target = Target::parse("redis+sentinel://127.0.0.1:26379,10.0.0.2/mymaster").unwrap();
        assert!(matches!(&target, Target::Sentinel { master, .. } if master == "mymaster"));
        assert!(Target::parse("redis+sentinel://:s%40cret@h1:1,h2:2/m?db=2").is_ok());
        let refused = |url: &str| format!("{:#}", Target::parse(url).unwrap_err());
        assert!(refused("redis+sentinel://h1:26379").contains("no master name"));
        assert!(refused("redis+sentinel://h1:26379/").contains("no master name"));
        assert!(refused("redis+sentinel://h1:port/m").contains("port is not a number"));
        assert!(refused("redis+sentinel://h1,:5/m").contains("without a host"));
        assert!(refused("redis+sentinel://h1/m?timeout=3").contains("unknown parameter"));
        assert!(refused("rediss+sentinel://h1/m").contains("TLS to Redis"));
        assert!(refused("http://h1/").contains("not a Redis URL"));
        assert_eq!(percent_decoded("s%40c%3Aret%zz"), "s@c:ret%zz");
    }
}
