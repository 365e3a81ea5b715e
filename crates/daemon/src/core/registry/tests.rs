//! The registry's unit tests: its tables, limits and mailbox hand-over,
//! without sockets (a connection is read by popping its queue).

use std::net::SocketAddr;
use std::time::Duration;

use crate::core::payload::Payload;

use super::*;
use crate::core::mailbox::MailboxLimits;

impl Registry {
    /// What became of a push here, for tests that do not care about the bus.
    fn push_to_uid(&self, uid: &Uid, message: &Payload, transient: bool) -> Pushed {
        self.push(uid, message, transient).pushed
    }
}

fn registry(queue: QueueLimits, per_uid: Option<(usize, PerUidPolicy)>) -> Registry {
    let limits = RegistryLimits {
        queue,
        per_uid,
        mailbox: None,
        hold_at_bind: false,
        groups: crate::core::groups::GroupLimits {
            per_uid: 10,
            memberships: 1000,
        },
    };
    Registry::new(limits, Clock::new(), Arc::default(), None)
}

fn limits(messages: usize) -> QueueLimits {
    QueueLimits {
        messages,
        bytes: 1 << 20,
    }
}

fn uid(text: &str) -> Uid {
    Uid::parse(text).unwrap()
}

fn peer() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// Connections that took the push (0 when kept or not).
fn push(registry: &Registry, to: &str, message: &str) -> u64 {
    match registry.push_to_uid(&uid(to), &message.into(), false) {
        Pushed::Delivered(n) => n,
        Pushed::Queued | Pushed::NotKept | Pushed::Offline => 0,
    }
}

fn with_mailbox(size: usize) -> Registry {
    let limits = RegistryLimits {
        queue: limits(8),
        per_uid: None,
        mailbox: Some(MailboxLimits {
            ttl: Duration::from_secs(30),
            size,
            memory: 1 << 20,
        }),
        hold_at_bind: false,
        groups: crate::core::groups::GroupLimits {
            per_uid: 10,
            memberships: 1000,
        },
    };
    Registry::new(limits, Clock::new(), Arc::default(), None)
}

fn drain(handle: &ConnHandle) -> Vec<String> {
    std::iter::from_fn(|| handle.pop())
        .map(|m| m.to_string())
        .collect()
}

#[test]
fn a_push_to_an_offline_uid_waits_for_its_next_connection_before_newer_pushes() {
    let registry = with_mailbox(10);
    for m in ["1", "2"] {
        assert_eq!(
            registry.push_to_uid(&uid("42"), &m.into(), false),
            Pushed::Queued
        );
    }
    assert_eq!(
        registry.push_to_uid(&uid("42"), &"t".into(), true),
        Pushed::NotKept,
        "transient"
    );
    let a = bound(&registry, "42");
    assert_eq!(push(&registry, "42", "3"), 1);
    assert_eq!(drain(&a), ["1", "2", "3"]);
    let b = bound(&registry, "42");
    assert!(
        drain(&b).is_empty(),
        "the mailbox went to the first connection only"
    );
    assert_eq!(registry.mailbox_totals(), MailboxTotals::default());
}

#[test]
fn what_the_last_connection_did_not_write_goes_back_to_the_front() {
    let registry = with_mailbox(10);
    let a = bound(&registry, "42");
    push(&registry, "42", "1");
    push(&registry, "42", "2");
    assert_eq!(a.pop().unwrap(), "1", "written");
    registry.close(a.id, "client");
    assert_eq!(
        registry.push_to_uid(&uid("42"), &"3".into(), false),
        Pushed::Queued
    );
    let b = bound(&registry, "42");
    assert_eq!(drain(&b), ["2", "3"]);
}

#[test]
fn a_kick_empties_the_mailbox_and_its_connections_give_nothing_back() {
    let registry = with_mailbox(10);
    let a = bound(&registry, "42");
    push(&registry, "42", "unwritten");
    registry.kick(&uid("42"), "bye", Some(Duration::from_secs(60)));
    registry.close(a.id, "client");
    assert_eq!(registry.mailbox_totals(), MailboxTotals::default());
    assert_eq!(
        registry.push_to_uid(&uid("42"), &"x".into(), false),
        Pushed::NotKept,
        "a banned uid's push is not kept"
    );
    registry.push_to_uid(&uid("7"), &"x".into(), false);
    registry.kick(&uid("7"), "bye", None);
    assert_eq!(
        registry.mailbox_totals(),
        MailboxTotals::default(),
        "offline uids too"
    );
}

#[test]
fn a_slow_consumer_unlisted_by_a_push_leaves_that_push_in_the_mailbox() {
    let registry = with_mailbox(10);
    let a = bound(&registry, "42");
    for i in 0..8 {
        assert_eq!(push(&registry, "42", &i.to_string()), 1);
    }
    assert_eq!(
        registry.push_to_uid(&uid("42"), &"8".into(), false),
        Pushed::Queued
    );
    registry.close(a.id, "client");
    let b = bound(&registry, "42");
    let got = drain(&b);
    assert_eq!(got.len(), 9, "{got:?}");
    assert_eq!(got.first().map(String::as_str), Some("0"));
    assert_eq!(got.last().map(String::as_str), Some("8"));
}

/// A new connection, bound to `to`.
fn bound(registry: &Registry, to: &str) -> Arc<ConnHandle> {
    let handle = registry.open(peer(), false);
    registry.bind(handle.id, &uid(to), None).unwrap();
    handle
}

fn close_request(handle: &ConnHandle) -> Option<CloseRequest> {
    handle.close_request().cloned()
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    let registry = registry(
        QueueLimits {
            messages: 100,
            bytes: 10,
        },
        None,
    );
    let a = bound(&registry, "a");
    assert_eq!(push(&registry, "a", "123456"), 1);
    assert_eq!(push(&registry, "a", "1234"), 1);
    assert_eq!(push(&registry, "a", "1"), 0, "11 bytes > 10");
    assert_eq!(close_request(&a), Some(CloseRequest::SlowConsumer));
}

#[test]
fn push_reaches_every_connection_of_the_uid_only() {
    let registry = registry(limits(8), None);
    let a = registry.open(peer(), false);
    let b = registry.open(peer(), false);
    let c = registry.open(peer(), false);
    assert!(registry.bind(a.id, &uid("42"), None).is_ok());
    assert!(registry.bind(b.id, &uid("42"), None).is_ok());
    assert!(registry.bind(c.id, &uid("7"), None).is_ok());
    assert_eq!(push(&registry, "42", "hi"), 2);
    assert_eq!(a.pop().unwrap(), "hi");
    assert_eq!(b.pop().unwrap(), "hi");
    assert!(c.pop().is_none());
    assert_eq!(push(&registry, "nobody", "hi"), 0);
}

#[test]
fn per_uid_limit_refuses_or_replaces_the_oldest() {
    let refuse = registry(limits(8), Some((2, PerUidPolicy::RefuseNew)));
    let (a, b, c) = (
        refuse.open(peer(), false),
        refuse.open(peer(), false),
        refuse.open(peer(), false),
    );
    assert!(
        refuse.bind(a.id, &uid("42"), None).is_ok() && refuse.bind(b.id, &uid("42"), None).is_ok()
    );
    assert_eq!(refuse.bind(c.id, &uid("42"), None), Err(BindError::TooMany));
    assert!(
        refuse.bind(c.id, &uid("43"), None).is_ok(),
        "other uids are not affected"
    );

    let replace = registry(limits(8), Some((1, PerUidPolicy::CloseOldest)));
    let (old, new) = (replace.open(peer(), false), replace.open(peer(), false));
    assert!(replace.bind(old.id, &uid("42"), None).is_ok());
    assert!(replace.bind(new.id, &uid("42"), None).is_ok());
    assert_eq!(close_request(&old), Some(CloseRequest::Replaced));
    assert_eq!(replace.online("42"), 1);
    assert_eq!(push(&replace, "42", "m"), 1);
    assert_eq!(new.pop().unwrap(), "m");
}

#[test]
fn a_connection_binds_once() {
    let registry = registry(limits(8), None);
    let a = registry.open(peer(), false);
    assert!(registry.bind(a.id, &uid("42"), None).is_ok());
    assert!(registry.bind(a.id, &uid("43"), None).is_err());
    assert_eq!(registry.online("43"), 0);
}

#[test]
fn kick_takes_the_uid_offline_before_the_tasks_close() {
    let registry = registry(limits(8), None);
    let a = bound(&registry, "42");
    let b = bound(&registry, "42");
    assert_eq!(registry.kick(&uid("42"), "bye", None), 2);
    assert_eq!(registry.online("42"), 0);
    assert_eq!(push(&registry, "42", "x"), 0);
    assert_eq!(
        close_request(&a),
        Some(CloseRequest::Kicked {
            reason: "bye".into()
        })
    );
    // Still open until the task closes it, but no longer bindable.
    assert_eq!(
        registry.sizes(),
        Sizes {
            connections: 2,
            uids: 0
        }
    );
    assert!(registry.bind(a.id, &uid("42"), None).is_err());
    registry.close(a.id, "client");
    registry.close(b.id, "client");
    assert_eq!(
        registry.sizes(),
        Sizes {
            connections: 0,
            uids: 0
        }
    );
    assert_eq!(registry.kick(&uid("42"), "bye", None), 0);
}

#[test]
fn a_ban_refuses_binds_until_it_ends_or_is_lifted() {
    let registry = registry(limits(8), None);
    let _a = bound(&registry, "42");
    assert_eq!(
        registry.kick(&uid("42"), "out", Some(Duration::from_secs(60))),
        1
    );
    let b = registry.open(peer(), false);
    assert_eq!(
        registry.bind(b.id, &uid("42"), None),
        Err(BindError::Banned)
    );
    assert_eq!(registry.bans().len(), 1);
    assert!(registry.unban("42"));
    assert!(!registry.unban("42"));
    assert!(registry.bind(b.id, &uid("42"), None).is_ok());
    // A ban on an offline uid still applies, and expires by itself.
    assert_eq!(
        registry.kick(&uid("7"), "x", Some(Duration::from_millis(1))),
        0
    );
    std::thread::sleep(Duration::from_millis(5));
    let c = registry.open(peer(), false);
    assert!(registry.bind(c.id, &uid("7"), None).is_ok());
    assert!(registry.bans().is_empty());
}

#[test]
fn a_kick_hold_refuses_binds_until_done() {
    let registry = registry(limits(8), None);
    let far = Instant::now() + Duration::from_secs(60);
    registry.hold_kicked(&uid("42"), "moving", far);
    let a = registry.open(peer(), false);
    assert_eq!(
        registry.bind(a.id, &uid("42"), None),
        Err(BindError::Kicking(Arc::from("moving")))
    );
    registry.kick_done("42");
    assert!(registry.bind(a.id, &uid("42"), None).is_ok());
}

#[test]
fn close_unbinds_and_keeps_the_other_connections() {
    let registry = registry(limits(8), None);
    let a = bound(&registry, "42");
    let b = bound(&registry, "42");
    registry.close(a.id, "client");
    assert_eq!(registry.online("42"), 1);
    registry.close(b.id, "client");
    assert_eq!(registry.online("42"), 0);
    assert!(registry.list().is_empty());
}

#[test]
fn a_full_queue_disconnects_the_slow_consumer_only() {
    let registry = registry(limits(2), None);
    let slow = bound(&registry, "s");
    let fast = bound(&registry, "f");
    for _ in 0..2 {
        assert_eq!(registry.broadcast(&"m".into()), 2);
        fast.pop().unwrap();
    }
    assert_eq!(registry.broadcast(&"m".into()), 1);
    assert_eq!(close_request(&slow), Some(CloseRequest::SlowConsumer));
    assert_eq!(registry.online("s"), 0);
    assert_eq!(registry.online("f"), 1);
}

#[test]
fn kick_idle_uses_last_activity() {
    let registry = registry(limits(8), None);
    let a = bound(&registry, "old");
    let b = bound(&registry, "new");
    a.touch(0);
    b.touch(registry.clock.now_ms() + 10_000);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let kicked = registry.kick_idle(1, "idle");
    assert_eq!(kicked.connections, 1);
    assert_eq!(kicked.uids, vec![(uid("old"), 1)]);
    assert_eq!(registry.online("new"), 1);
}

#[test]
fn binds_and_closes_mark_the_uid_changed() {
    let limits = RegistryLimits {
        queue: limits(8),
        per_uid: None,
        mailbox: None,
        hold_at_bind: false,
        groups: crate::core::groups::GroupLimits {
            per_uid: 10,
            memberships: 1000,
        },
    };
    let changed = Arc::new(ChangedUids::default());
    let tracking = Registry::new(limits, Clock::new(), Arc::default(), Some(changed.clone()));
    let a = bound(&tracking, "42");
    assert_eq!(changed.take(), vec![uid("42")]);
    tracking.close(a.id, "client");
    assert_eq!(changed.take(), vec![uid("42")]);
    assert!(changed.take().is_empty());
}

#[test]
fn list_is_sorted_and_reports_peers() {
    let registry = registry(limits(8), None);
    for name in ["b", "a", "c"] {
        let h = registry.open(peer(), false);
        registry.bind(h.id, &uid(name), None).unwrap();
    }
    let list = registry.list();
    let uids: Vec<_> = list.iter().map(|(uid, _)| uid.as_str()).collect();
    assert_eq!(uids, ["a", "b", "c"]);
    assert_eq!(list[0].1[0].peer, peer());
}
