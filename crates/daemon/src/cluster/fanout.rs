//! Requests to the other nodes and their replies: a request published on the
//! bus, the live nodes expected to answer, the wait (bounded, dropping nodes
//! whose lease runs out), and the notes for those that did not answer; the
//! kick's end and clean-up; presence lookups of one uid.

use std::collections::HashSet;

use pushd_proto::admin::Request;
use pushd_proto::uid::Uid;

use super::bus::{self, Header};
use super::pending::Gathered;
use super::{Cluster, LIVENESS_RECHECK, Partial};

impl Cluster {
    /// Connections of `uid` on the other live nodes, from presence.
    pub(crate) async fn online(&self, uid: &str) -> Partial<u64> {
        if !self.is_up() {
            return self.partial(0, self.unreachable_note(None));
        }
        let found: redis::RedisResult<Vec<(String, u64)>> = self
            .scripts
            .online
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&self.id)
            .arg(uid)
            .invoke_async(&mut self.conn())
            .await;
        match found {
            Ok(found) => Partial {
                value: found.iter().map(|(_, n)| n).sum(),
                incomplete: Vec::new(),
            },
            Err(err) => self.partial(0, self.unreachable_note(Some(&err))),
        }
    }

    /// Asks every other live node to carry out `request` on its own connections and
    /// gathers the replies, waiting at most `--cluster-timeout`.
    pub(crate) async fn fan_out(&self, request: Request) -> Partial<Gathered> {
        self.request(request, None).await
    }

    /// Asks node `node` alone to carry out `request`, through its inbox, and
    /// waits at most `--cluster-timeout` for its reply. A node that is gone
    /// (nobody listens on its inbox) replies nothing, and that is no note:
    /// its connections are gone with it.
    pub(crate) async fn ask(&self, node: &str, request: Request) -> Partial<Gathered> {
        self.request(request, Some(node)).await
    }

    /// [`Cluster::fan_out`] (`node` is `None`) or [`Cluster::ask`].
    async fn request(&self, request: Request, node: Option<&str>) -> Partial<Gathered> {
        let nothing = || Gathered {
            replies: Default::default(),
            missing: Vec::new(),
        };
        if !self.is_up() {
            return self.partial(nothing(), self.unreachable_note(None));
        }
        let (id, wake) = self.pending.open();
        let header = bus::encode(
            &Header::Request {
                from: self.id.clone(),
                id,
                request,
            },
            b"",
        );
        let asked = async {
            match node {
                Some(node) => {
                    self.pending.expect(id, [node.to_owned()]);
                    self.publish(&self.keys.inbox(node), header).await
                }
                None => {
                    // The expected nodes are the live ones before publishing: a node
                    // joining later is not waited for (its reply still counts if it comes).
                    let live = self.live_nodes().await?;
                    self.pending
                        .expect(id, live.into_iter().filter(|node| *node != self.id));
                    self.publish(&self.keys.all(), header).await
                }
            }
        };
        match asked.await {
            // Nobody listens on that node's inbox: it is gone.
            Ok(0) if node.is_some() => {
                self.pending.close(id);
                return Partial {
                    value: nothing(),
                    incomplete: Vec::new(),
                };
            }
            Ok(_) => {}
            Err(err) => {
                self.pending.close(id);
                return self.partial(nothing(), self.unreachable_note(Some(&err)));
            }
        }
        let gathered = self.wait(id, &wake).await;
        let incomplete = self.missing_notes(&gathered);
        Partial {
            value: gathered,
            incomplete,
        }
    }

    /// Waits until request `id` is complete or the timeout passes, dropping nodes
    /// whose lease ran out meanwhile.
    pub(super) async fn wait(&self, id: u64, wake: &tokio::sync::Notify) -> Gathered {
        self.wait_until(id, wake, tokio::time::Instant::now() + self.timeout)
            .await
    }

    /// [`Cluster::wait`] with an explicit deadline, shared by several requests.
    pub(super) async fn wait_until(
        &self,
        id: u64,
        wake: &tokio::sync::Notify,
        deadline: tokio::time::Instant,
    ) -> Gathered {
        while !self.pending.is_complete(id) {
            let recheck = (tokio::time::Instant::now() + LIVENESS_RECHECK).min(deadline);
            tokio::select! {
                () = wake.notified() => continue,
                () = tokio::time::sleep_until(recheck) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if let Ok(live) = self.live_nodes().await {
                let live: HashSet<String> = live.into_iter().collect();
                self.pending.drop_nodes(&|node| !live.contains(node));
            }
        }
        self.pending.close(id)
    }

    pub(super) fn missing_notes(&self, gathered: &Gathered) -> Vec<String> {
        gathered
            .missing
            .iter()
            .map(|node| {
                format!(
                    "node {node} did not reply within {}",
                    humantime::format_duration(self.timeout)
                )
            })
            .collect()
    }

    /// Tells every node that the kick of `uids` is over.
    pub(crate) async fn kick_done(&self, uids: &[Uid]) {
        let header = Header::KickDone {
            from: self.id.clone(),
            uids: uids.to_vec(),
        };
        let _ = self
            .publish(&self.keys.all(), bus::encode(&header, b""))
            .await;
    }

    /// Removes `uids` from the presence of `nodes` (ids) that did not answer a kick.
    pub(crate) async fn forget(&self, nodes: &[String], uids: &[Uid]) {
        let uids: Vec<&str> = uids.iter().map(Uid::as_str).collect();
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.hdel(self.keys.node(node), &uids).ignore();
        }
        let _: redis::RedisResult<()> = pipe.query_async(&mut self.conn()).await;
    }
}
