//! The subscription index: a topic trie with one node per filter level.
//!
//! A PUBLISH walks only the branches its own topic levels select (the literal level, `+` and
//! `#`), so its cost depends on the topic's depth and on the subscriptions that match, not on the
//! number of unrelated subscriptions. The trie lives behind the broker's `RwLock`: writers
//! (SUBSCRIBE, UNSUBSCRIBE, session end) take the write lock, publishers take the read lock only
//! while [`SubTrie::collect`] runs (no `.await` inside), then deliver outside the lock.
//!
//! Shared subscriptions (`$share/<group>/<filter>`) hang off the same nodes as a group of members;
//! the group's round-robin cursor is an atomic so it advances under the read lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_mqtt::QoS;

use super::session::Session;

/// One subscription of one session.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    /// The subscribing session (kept alive by the trie until the subscription is removed).
    pub(crate) session: Arc<Session>,
    /// Granted QoS.
    pub(crate) qos: QoS,
    /// v5 No Local: never deliver the session's own publications.
    pub(crate) no_local: bool,
    /// v5 Retain As Published: keep the RETAIN flag of forwarded messages.
    pub(crate) retain_as_published: bool,
    /// v5 Subscription Identifier.
    pub(crate) id: Option<u32>,
}

/// Where one message goes: a session, once, with everything its matching subscriptions say.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) session: Arc<Session>,
    /// The highest granted QoS among the matching subscriptions.
    pub(crate) qos: QoS,
    /// Whether any matching subscription asked for Retain As Published.
    pub(crate) retain_as_published: bool,
    /// Every matching subscription identifier ([MQTT-3.3.4-4]).
    pub(crate) sub_ids: Vec<u32>,
}

#[derive(Debug)]
struct SharedGroup {
    name: Box<str>,
    members: Vec<Subscriber>,
    /// Round-robin cursor; advanced with the read lock held, hence atomic.
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Leaf {
    subs: Vec<Subscriber>,
    shared: Vec<SharedGroup>,
}

impl Leaf {
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.shared.is_empty()
    }

    /// Adds or replaces the session's subscription; true when it replaced one.
    fn insert(&mut self, group: Option<&str>, sub: Subscriber) -> bool {
        let list = match group {
            None => &mut self.subs,
            Some(name) => {
                let index = match self.shared.iter().position(|g| &*g.name == name) {
                    Some(i) => i,
                    None => {
                        self.shared.push(SharedGroup {
                            name: name.into(),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        self.shared.len() - 1
                    }
                };
                &mut self.shared[index].members
            }
        };
        if let Some(existing) = list.iter_mut().find(|s| s.session.key == sub.session.key) {
            *existing = sub;
            true
        } else {
            list.push(sub);
            false
        }
    }

    fn remove(&mut self, group: Option<&str>, key: u64) -> bool {
        match group {
            None => {
                let before = self.subs.len();
                self.subs.retain(|s| s.session.key != key);
                before != self.subs.len()
            }
            Some(name) => {
                let Some(i) = self.shared.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let members = &mut self.shared[i].members;
                let before = members.len();
                members.retain(|s| s.session.key != key);
                let removed = before != members.len();
                if members.is_empty() {
                    self.shared.swap_remove(i);
                }
                removed
            }
        }
    }

    /// Appends this leaf's routes; returns how many route lists (plain subscribers, each
    /// shared group) it contributed, for the duplicate check.
    fn collect(&self, origin: u64, out: &mut Vec<Route>) -> usize {
        let lists = usize::from(!self.subs.is_empty()) + self.shared.len();
        for sub in &self.subs {
            if sub.no_local && sub.session.key == origin {
                continue;
            }
            out.push(route(sub));
        }
        for group in &self.shared {
            let len = group.members.len();
            let start = group.next.load(Ordering::Relaxed);
            // One member per message, round robin over the members whose session is online;
            // when every member is offline the message goes to the next one's queue. Two
            // concurrent publishers may pick the same member: the cursor is advisory.
            let index = (0..len)
                .map(|i| (start + i) % len)
                .find(|&i| group.members[i].session.is_online())
                .unwrap_or(start % len);
            group.next.store(index + 1, Ordering::Relaxed);
            let chosen = &group.members[index];
            out.push(route(chosen));
        }
        lists
    }
}

fn route(sub: &Subscriber) -> Route {
    Route {
        session: Arc::clone(&sub.session),
        qos: sub.qos,
        retain_as_published: sub.retain_as_published,
        sub_ids: sub.id.into_iter().collect(),
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node, ahash::RandomState>,
    plus: Option<Box<Node>>,
    /// Subscriptions whose filter ends at this node.
    exact: Leaf,
    /// Subscriptions whose filter ends with `#` after this node.
    hash: Leaf,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }
}

/// The subscription index. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct SubTrie {
    root: Node,
    count: usize,
}

impl SubTrie {
    /// How many subscriptions the index holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Adds (or replaces) a subscription of `sub.session` to `filter` (already validated, the
    /// `$share/<group>/` prefix removed and given as `group`). Returns true when it replaced one.
    pub(crate) fn insert(&mut self, group: Option<&str>, filter: &str, sub: Subscriber) -> bool {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let leaf = loop {
            let Some(level) = levels.next() else {
                break &mut node.exact;
            };
            if level == "#" {
                break &mut node.hash;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        };
        let replaced = leaf.insert(group, sub);
        if !replaced {
            self.count += 1;
        }
        replaced
    }

    /// Removes the subscription of session `key` to `filter`; true when there was one.
    pub(crate) fn remove(&mut self, group: Option<&str>, filter: &str, key: u64) -> bool {
        let removed = remove_in(&mut self.root, Some(filter), group, key);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Fills `out` (cleared first) with one [`Route`] per session that `topic` reaches,
    /// merging overlapping subscriptions of one session into one delivery (highest QoS, all
    /// identifiers). `origin` is the publishing session's key (0 for the broker itself), for
    /// No Local.
    pub(crate) fn collect(&self, topic: &str, origin: u64, out: &mut Vec<Route>) {
        out.clear();
        let dollar = topic.starts_with('$');
        let lists = collect_in(&self.root, topic, true, dollar, origin, out);
        // A session appears once per list, so duplicates need two lists or more: the common
        // fan-out (one filter, many sessions) skips the sort.
        if lists > 1 && out.len() > 1 {
            out.sort_unstable_by_key(|r| r.session.key);
            out.dedup_by(|later, kept| {
                if later.session.key != kept.session.key {
                    return false;
                }
                kept.qos = kept.qos.max(later.qos);
                kept.retain_as_published |= later.retain_as_published;
                kept.sub_ids.append(&mut later.sub_ids);
                true
            });
        }
    }
}

fn remove_in(node: &mut Node, rest: Option<&str>, group: Option<&str>, key: u64) -> bool {
    let Some(rest) = rest else {
        return node.exact.remove(group, key);
    };
    let (level, tail) = match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    };
    if level == "#" {
        return node.hash.remove(group, key);
    }
    if level == "+" {
        let Some(child) = node.plus.as_deref_mut() else {
            return false;
        };
        let removed = remove_in(child, tail, group, key);
        if child.is_empty() {
            node.plus = None;
        }
        return removed;
    }
    let Some(child) = node.children.get_mut(level) else {
        return false;
    };
    let removed = remove_in(child, tail, group, key);
    if child.is_empty() {
        node.children.remove(level);
    }
    removed
}

fn collect_in(
    node: &Node,
    rest: &str,
    first: bool,
    dollar: bool,
    origin: u64,
    out: &mut Vec<Route>,
) -> usize {
    // [MQTT-4.7.2-1]: wildcards at the first level do not match topics starting with `$`.
    let wild = !(first && dollar);
    let mut lists = 0;
    if wild {
        lists += node.hash.collect(origin, out);
    }
    let (level, tail) = match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        lists += descend(child, tail, dollar, origin, out);
    }
    if wild && let Some(child) = node.plus.as_deref() {
        lists += descend(child, tail, dollar, origin, out);
    }
    lists
}

fn descend(
    node: &Node,
    tail: Option<&str>,
    dollar: bool,
    origin: u64,
    out: &mut Vec<Route>,
) -> usize {
    match tail {
        Some(tail) => collect_in(node, tail, false, dollar, origin, out),
        // `a/#` also matches `a` ([MQTT-4.7.1-2]).
        None => node.exact.collect(origin, out) + node.hash.collect(origin, out),
    }
}
/// The codec's topic rule, `$`-topics included ([MQTT-4.7.2-1]).
pub(crate) use switchboard_mqtt::topic::matches;

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(key: u64, qos: QoS, id: Option<u32>) -> Subscriber {
        Subscriber {
            session: Session::new_arc(key, format!("c{key}").into()),
            qos,
            no_local: false,
            retain_as_published: false,
            id,
        }
    }

    fn keys(trie: &SubTrie, topic: &str) -> Vec<u64> {
        let mut out = Vec::new();
        trie.collect(topic, 0, &mut out);
        let mut keys: Vec<u64> = out.iter().map(|r| r.session.key).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn wildcards_match_like_the_specification() {
        let mut trie = SubTrie::default();
        trie.insert(None, "a/b", sub(1, QoS::AtMostOnce, None));
        trie.insert(None, "a/+", sub(2, QoS::AtMostOnce, None));
        trie.insert(None, "a/#", sub(3, QoS::AtMostOnce, None));
        trie.insert(None, "#", sub(4, QoS::AtMostOnce, None));
        trie.insert(None, "+/+/c", sub(5, QoS::AtMostOnce, None));
        trie.insert(None, "$SYS/#", sub(6, QoS::AtMostOnce, None));
        assert_eq!(keys(&trie, "a/b"), vec![1, 2, 3, 4]);
        assert_eq!(keys(&trie, "a"), vec![3, 4]);
        assert_eq!(keys(&trie, "a/b/c"), vec![3, 4, 5]);
        assert_eq!(keys(&trie, "$SYS/broker/uptime"), vec![6]);
        assert_eq!(keys(&trie, "/a"), vec![4]);
        assert_eq!(trie.len(), 6);
        assert!(trie.remove(None, "a/+", 2));
        assert!(!trie.remove(None, "a/+", 2));
        assert_eq!(keys(&trie, "a/b"), vec![1, 3, 4]);
        for (f, k) in [
            ("a/b", 1),
            ("a/#", 3),
            ("#", 4),
            ("+/+/c", 5),
            ("$SYS/#", 6),
        ] {
            assert!(trie.remove(None, f, k));
        }
        assert!(trie.root.is_empty());
        assert_eq!(trie.len(), 0);
    }

    #[test]
    fn overlapping_subscriptions_merge_into_one_route() {
        let mut trie = SubTrie::default();
        let s = sub(1, QoS::AtMostOnce, Some(7));
        trie.insert(None, "a/+", s.clone());
        trie.insert(
            None,
            "a/#",
            Subscriber {
                qos: QoS::ExactlyOnce,
                id: Some(9),
                ..s
            },
        );
        let mut out = Vec::new();
        trie.collect("a/b", 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].qos, QoS::ExactlyOnce);
        let mut ids = out[0].sub_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![7, 9]);
    }

    #[test]
    fn shared_groups_round_robin() {
        let mut trie = SubTrie::default();
        for key in 1..=3 {
            let s = sub(key, QoS::AtMostOnce, None);
            s.session.set_online(true);
            trie.insert(Some("g"), "t", s);
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.extend(keys(&trie, "t"));
        }
        assert_eq!(seen, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn filter_matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
    }
}
