//! The books of a run (what each uid was sent and what its pages got) and
//! the accounting of every push by the rules in the module's comment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One push as the backend saw it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    pub(super) at: Instant,
    /// When its answer came, and what it was (`None`: no answer).
    pub(super) answer: Option<(Instant, Answer)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Ok,
    Queued,
    Fail,
}

/// What a page got, in order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Got {
    Push(u64),
    Gap,
}

/// Everything one uid saw: its pushes, by number, and its pages' receipts.
#[derive(Debug, Default)]
pub(super) struct Uid {
    pub(super) sent: HashMap<u64, Sent>,
    /// Per page visit, what it got and when.
    pub(super) visits: Vec<Vec<(Instant, Got)>>,
    /// Per page visit, when it bound, whether it resumed (had a `since`),
    /// and on which node.
    pub(super) starts: Vec<(Instant, bool, usize)>,
}

/// The uids' books, shared by the pages and the pusher.
pub(super) type Books = Arc<Vec<Mutex<Uid>>>;

/// What the accounting found, for one kind of page.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) promised: u64,
    pub(super) delivered: u64,
    pub(super) excused: u64,
    pub(super) lost: u64,
    pub(super) duplicated: u64,
    pub(super) out_of_order: u64,
    pub(super) gaps: u64,
}

/// Accounts for every push of one uid (see the module's rules); `ttl` is
/// pushd's `--mailbox-ttl`.
pub(super) fn account(book: &Uid, ttl: Duration, tally: &mut Tally) {
    let promised = |s: &u64| {
        let sent = &book.sent[s];
        matches!(sent.answer, Some((_, Answer::Ok | Answer::Queued)))
    };
    // Where each push was received: (visit, index in the visit).
    let mut received: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
    for (v, visit) in book.visits.iter().enumerate() {
        for (k, (_, got)) in visit.iter().enumerate() {
            match got {
                Got::Push(s) => received.entry(*s).or_default().push((v, k)),
                Got::Gap => tally.gaps += 1,
            }
        }
    }
    // Surely newer: sent after `a`'s answer came.
    let newer = |a: &Sent, b: &Sent| a.answer.is_some_and(|(answered, _)| b.at > answered);
    for (s, sent) in &book.sent {
        if !promised(s) {
            continue;
        }
        tally.promised += 1;
        match received.get(s) {
            Some(places) => {
                tally.delivered += 1;
                // Twice on one visit, or again on a later visit not told `!gap` first.
                let mut twice = false;
                for pair in places.windows(2) {
                    let ((v1, _), (v2, k2)) = (pair[0], pair[1]);
                    let told = book.visits[v2][..k2]
                        .iter()
                        .any(|(_, g)| matches!(g, Got::Gap));
                    twice |= v1 == v2 || !told;
                }
                tally.duplicated += u64::from(twice);
                if twice {
                    debug_loss("duplicated", book, *s, sent);
                }
            }
            None => {
                // A gap after it was sent, before the uid's pages (one after another,
                // each resuming where the last left) read anything surely newer.
                let all = book.visits.iter().flatten();
                let newer_at = (all.clone())
                    .filter_map(|(at, got)| match got {
                        Got::Push(q) if book.sent.get(q).is_some_and(|q| newer(sent, q)) => {
                            Some(*at)
                        }
                        _ => None,
                    })
                    .min();
                let told = all.into_iter().any(|(at, got)| {
                    matches!(got, Got::Gap) && *at > sent.at && newer_at.is_none_or(|n| *at <= n)
                });
                // Or nothing was promised to anyone: `queued`, and the next page
                // came after the TTL, a fresh one (no `since`: nothing to resume).
                let expired_unclaimed = matches!(sent.answer, Some((answered, Answer::Queued))
                    if book.starts.iter().find(|(at, _, _)| *at > sent.at)
                        .is_none_or(|(at, resumed, _)| *at > answered + ttl && !resumed));
                let excused = told || expired_unclaimed;
                if excused {
                    tally.excused += 1;
                } else {
                    tally.lost += 1;
                    debug_loss("lost", book, *s, sent);
                }
            }
        }
    }
    // Out of order: within a visit, a push read after one surely newer than it.
    for visit in &book.visits {
        let mut seen: Vec<&Sent> = Vec::new();
        for (_, got) in visit {
            if let Got::Push(s) = got
                && let Some(sent) = book.sent.get(s)
            {
                if seen.iter().any(|earlier| newer(sent, earlier)) {
                    tally.out_of_order += 1;
                    debug_loss("out of order", book, *s, sent);
                }
                seen.push(sent);
            }
        }
    }
}

/// With `PUSHBENCH_PROMISE_DEBUG`: a push that broke the promise (`what`) and
/// its uid's visits around it, times in ms from when it was sent.
fn debug_loss(what: &str, book: &Uid, s: u64, sent: &Sent) {
    if std::env::var_os("PUSHBENCH_PROMISE_DEBUG").is_none() {
        return;
    }
    let ms = |at: Instant| {
        if at >= sent.at {
            (at - sent.at).as_millis() as i64
        } else {
            -((sent.at - at).as_millis() as i64)
        }
    };
    let answer = sent.answer.map(|(at, answer)| (ms(at), answer));
    eprintln!("{what}: push {s}, answered {answer:?}");
    for (v, ((start, resumed, node), visit)) in book.starts.iter().zip(&book.visits).enumerate() {
        let near = ms(*start) > -2_000 && ms(*start) < 3_000;
        if near {
            let got: Vec<(i64, Got)> = visit.iter().map(|(at, got)| (ms(*at), *got)).collect();
            eprintln!(
                "  visit {v} at {} on n{node} resumed {resumed}: {got:?}",
                ms(*start)
            );
        }
    }
}
