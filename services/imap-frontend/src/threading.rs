//! THREAD's two algorithms (RFC 5256 §3), ORDEREDSUBJECT and REFERENCES, and REFS, Dovecot's
//! variant of REFERENCES, over the [`Summary`] of each message found, and the thread lists of
//! the `* THREAD` response.
//!
//! Threads are built in an arena of nodes and walked with explicit stacks: reply chains come
//! from message headers anyone can write, and a chain ten thousand deep must not overflow a
//! session's stack.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::summary::Summary;

/// A message to thread: what the response names it by (its UID or sequence number), its
/// sequence number (which breaks ties of sent date), and its summary.
pub struct Entry<'a> {
    pub id: u32,
    pub number: u32,
    pub summary: &'a Summary,
}

/// THREAD=ORDEREDSUBJECT: messages grouped by base subject, each group under its oldest
/// message, groups in the order of their first message's sent date.
pub fn ordered_subject(entries: &[Entry<'_>]) -> String {
    let mut forest = Forest::new(entries);
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| {
        let subject = |index: usize| entries[index].summary.subject.as_str();
        subject(a).cmp(subject(b)).then_with(|| date_key(&entries[a]).cmp(&date_key(&entries[b])))
    });
    let mut first_of_subject: Option<usize> = None;
    for index in order {
        let node = forest.add(Some(index));
        match first_of_subject {
            Some(first) if entries[forest.message_of(first)].summary.subject == entries[index].summary.subject => {
                forest.link(first, node);
            }
            _ => first_of_subject = Some(node),
        }
    }
    forest.roots = (0..forest.nodes.len()).filter(|&node| forest.nodes[node].parent.is_none()).collect();
    forest.sort();
    forest.render()
}

/// THREAD=REFERENCES: threads from Message-ID, References and In-Reply-To, those split by a
/// missing link joined again by base subject (RFC 5256 §3, steps 1 to 6).
pub fn references(entries: &[Entry<'_>]) -> String {
    let mut forest = Forest::new(entries);
    forest.link_references();
    forest.roots = (0..forest.nodes.len()).filter(|&node| forest.nodes[node].parent.is_none()).collect();
    forest.prune_dummies();
    forest.sort();
    forest.merge_by_subject();
    forest.sort();
    forest.render()
}

/// THREAD=REFS, as Dovecot offers it: the threads of REFERENCES without joining them by
/// subject, in the order of each thread's newest message (the thread with the latest reply
/// last), so a webmail lists recently active conversations together.
pub fn refs(entries: &[Entry<'_>]) -> String {
    let mut forest = Forest::new(entries);
    forest.link_references();
    forest.roots = (0..forest.nodes.len()).filter(|&node| forest.nodes[node].parent.is_none()).collect();
    forest.prune_dummies();
    forest.sort();
    forest.sort_roots_by_newest();
    forest.render()
}

/// The order of sent dates, ties broken by sequence number (RFC 5256 §2.2).
fn date_key(entry: &Entry<'_>) -> (i64, u32) {
    (entry.summary.sent, entry.number)
}

/// A message of the thread tree, or a dummy standing for one that was referred to but is not
/// among those threaded.
#[derive(Default)]
struct Node {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Forest<'a, 'e> {
    entries: &'a [Entry<'e>],
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

impl<'a, 'e> Forest<'a, 'e> {
    fn new(entries: &'a [Entry<'e>]) -> Self {
        Forest { entries, nodes: Vec::with_capacity(entries.len()), roots: Vec::new() }
    }

    fn add(&mut self, message: Option<usize>) -> usize {
        self.nodes.push(Node { message, ..Node::default() });
        self.nodes.len() - 1
    }

    fn is_dummy(&self, node: usize) -> bool {
        self.nodes[node].message.is_none()
    }

    /// The message a node is, or for a dummy, its first child's.
    fn message_of(&self, node: usize) -> usize {
        let mut node = node;
        loop {
            match (self.nodes[node].message, self.nodes[node].children.first()) {
                (Some(message), _) => return message,
                (None, Some(&first)) => node = first,
                (None, None) => unreachable!("a dummy without children is pruned"),
            }
        }
    }

    fn link(&mut self, parent: usize, child: usize) {
        self.nodes[child].parent = Some(parent);
        self.nodes[parent].children.push(child);
    }

    fn unlink(&mut self, child: usize) {
        if let Some(parent) = self.nodes[child].parent.take() {
            self.nodes[parent].children.retain(|&other| other != child);
        }
    }

    /// Whether `node` is `ancestor` or below it: linking `ancestor` under `node` would close a
    /// loop.
    fn descends_from(&self, node: usize, ancestor: usize) -> bool {
        if self.nodes[ancestor].children.is_empty() {
            // Nothing is below it (the usual case: a message seen for the first time).
            return node == ancestor;
        }
        let mut current = Some(node);
        while let Some(at) = current {
            if at == ancestor {
                return true;
            }
            current = self.nodes[at].parent;
        }
        false
    }

    /// Step 1: a node per Message-ID, linked as each message's references say.
    fn link_references(&mut self) {
        let entries = self.entries;
        let mut by_id: HashMap<&'e str, usize> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let summary: &'e Summary = entry.summary;
            // A message without a valid Message-ID, or with one an earlier message has, gets
            // a node of its own that nothing refers to.
            let own = match summary.message_id.as_deref() {
                Some(id) => match by_id.get(id) {
                    Some(&node) if self.is_dummy(node) => {
                        self.nodes[node].message = Some(index);
                        node
                    }
                    Some(_) => self.add(Some(index)),
                    None => {
                        let node = self.add(Some(index));
                        by_id.insert(id, node);
                        node
                    }
                },
                None => self.add(Some(index)),
            };
            let mut chain = Vec::with_capacity(summary.references.len());
            for id in &summary.references {
                let node = match by_id.get(id.as_str()) {
                    Some(&node) => node,
                    None => {
                        let node = self.add(None);
                        by_id.insert(id, node);
                        node
                    }
                };
                chain.push(node);
            }
            // Step 1.A: each reference the parent of the next, where that one has no parent
            // yet and no loop would close.
            for pair in chain.windows(2) {
                let (parent, child) = (pair[0], pair[1]);
                if self.nodes[child].parent.is_none() && !self.descends_from(parent, child) {
                    self.link(parent, child);
                }
            }
            // Step 1.B: the last reference is the message's parent, whatever it had before.
            match chain.last() {
                Some(&parent) if !self.descends_from(parent, own) => {
                    self.unlink(own);
                    self.link(parent, own);
                }
                Some(_) => {}
                None => self.unlink(own),
            }
        }
    }

    /// Every node below the roots, each after all of its children.
    fn children_first(&self) -> Vec<usize> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(usize, bool)> = self.roots.iter().rev().map(|&root| (root, false)).collect();
        while let Some((node, children_done)) = stack.pop() {
            if children_done {
                order.push(node);
            } else {
                stack.push((node, true));
                stack.extend(self.nodes[node].children.iter().rev().map(|&child| (child, false)));
            }
        }
        order
    }

    /// Step 3: dummies without children go, and dummies with children give them to their
    /// own parent; at the top only a dummy with one child does, as siblings at the top would
    /// be separate threads.
    fn prune_dummies(&mut self) {
        for node in self.children_first() {
            let children = std::mem::take(&mut self.nodes[node].children);
            let mut kept = Vec::with_capacity(children.len());
            for child in children {
                if self.is_dummy(child) {
                    for grandchild in std::mem::take(&mut self.nodes[child].children) {
                        self.nodes[grandchild].parent = Some(node);
                        kept.push(grandchild);
                    }
                } else {
                    kept.push(child);
                }
            }
            self.nodes[node].children = kept;
        }
        let roots = std::mem::take(&mut self.roots);
        for root in roots {
            if !self.is_dummy(root) || self.nodes[root].children.len() > 1 {
                self.roots.push(root);
            } else if let Some(only) = self.nodes[root].children.pop() {
                self.nodes[only].parent = None;
                self.roots.push(only);
            }
        }
    }

    /// Steps 4 and 6: siblings in order of sent date, a dummy by its first child's.
    fn sort(&mut self) {
        for node in self.children_first() {
            let mut children = std::mem::take(&mut self.nodes[node].children);
            children.sort_by_key(|&child| date_key(&self.entries[self.message_of(child)]));
            self.nodes[node].children = children;
        }
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_key(|&root| date_key(&self.entries[self.message_of(root)]));
        self.roots = roots;
    }

    /// Threads in the order of the newest sent date in each; on a tie, the one whose root
    /// comes first in the mailbox (a dummy root first of all).
    fn sort_roots_by_newest(&mut self) {
        let mut roots = std::mem::take(&mut self.roots);
        roots.sort_by_cached_key(|&root| {
            let (mut newest, mut stack) = (None, vec![root]);
            while let Some(node) = stack.pop() {
                if let Some(message) = self.nodes[node].message {
                    newest = newest.max(Some(self.entries[message].summary.sent));
                }
                stack.extend(self.nodes[node].children.iter().copied());
            }
            (newest, self.nodes[root].message.map_or(0, |message| self.entries[message].number))
        });
        self.roots = roots;
    }

    fn subject_of(&self, node: usize) -> &'e str {
        self.entries[self.message_of(node)].summary.subject.as_str()
    }

    fn is_reply(&self, node: usize) -> bool {
        self.entries[self.message_of(node)].summary.reply_or_forward
    }

    /// Step 5: threads at the top with the same base subject are joined.
    fn merge_by_subject(&mut self) {
        // 5.B: per subject the thread to join the others to: a dummy before a message, a
        // message before a reply to it.
        let mut table: HashMap<&str, usize> = HashMap::new();
        for &root in &self.roots {
            let subject = self.subject_of(root);
            if subject.is_empty() {
                continue;
            }
            match table.get(subject) {
                None => {
                    table.insert(subject, root);
                }
                Some(&held) => {
                    let (root_dummy, held_dummy) = (self.is_dummy(root), self.is_dummy(held));
                    let replaces = !held_dummy && (root_dummy || (self.is_reply(held) && !self.is_reply(root)));
                    if replaces {
                        table.insert(subject, root);
                    }
                }
            }
        }
        // 5.C: every other thread with that subject joins it.
        let roots = std::mem::take(&mut self.roots);
        let mut kept = Vec::with_capacity(roots.len());
        for root in roots {
            if self.nodes[root].parent.is_some() {
                // Already joined under a dummy made for its subject.
                continue;
            }
            let subject = self.subject_of(root);
            let held = if subject.is_empty() { root } else { table[subject] };
            if held == root {
                kept.push(root);
                continue;
            }
            match (self.is_dummy(root), self.is_dummy(held)) {
                (true, true) => {
                    for child in std::mem::take(&mut self.nodes[root].children) {
                        self.link(held, child);
                    }
                }
                (false, true) => self.link(held, root),
                (false, false) if self.is_reply(root) && !self.is_reply(held) => self.link(held, root),
                _ => {
                    let dummy = self.add(None);
                    self.link(dummy, held);
                    self.link(dummy, root);
                    table.insert(subject, dummy);
                    kept.push(dummy);
                }
            }
        }
        kept.retain(|&root| self.nodes[root].parent.is_none());
        self.roots = kept;
    }

    /// The thread lists of the `* THREAD` response (RFC 5256 §4): `(1 2 (3)(4 5))`.
    fn render(&self) -> String {
        enum Step {
            Node(usize),
            Text(&'static str),
        }
        let mut out = String::new();
        let mut stack: Vec<Step> = Vec::new();
        for &root in &self.roots {
            stack.push(Step::Text(")"));
            stack.push(Step::Node(root));
            out.push('(');
            while let Some(step) = stack.pop() {
                let node = match step {
                    Step::Text(text) => {
                        out.push_str(text);
                        continue;
                    }
                    Step::Node(node) => &self.nodes[node],
                };
                if let Some(message) = node.message {
                    let _ = write!(out, "{}", self.entries[message].id);
                }
                match node.children.as_slice() {
                    [] => {}
                    // One reply continues the thread's list; several branch into sublists.
                    [only] if node.message.is_some() => {
                        stack.push(Step::Node(*only));
                        stack.push(Step::Text(" "));
                    }
                    children => {
                        for &child in children.iter().rev() {
                            stack.push(Step::Text(")"));
                            stack.push(Step::Node(child));
                            stack.push(Step::Text("("));
                        }
                        if node.message.is_some() {
                            stack.push(Step::Text(" "));
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary sent at `sent` with `subject`, Message-ID `id` and `references`.
    fn summary(sent: i64, subject: &str, id: Option<&str>, references: &[&str]) -> Summary {
        let (subject, reply_or_forward) = crate::summary::base_subject(subject);
        Summary {
            sent,
            subject: subject.to_lowercase(),
            reply_or_forward,
            message_id: id.map(str::to_string),
            references: references.iter().map(|id| id.to_string()).collect(),
            ..Summary::default()
        }
    }

    fn entries(summaries: &[Summary]) -> Vec<Entry<'_>> {
        let numbered = summaries.iter().enumerate().map(|(index, summary)| (index as u32 + 1, summary));
        numbered.map(|(number, summary)| Entry { id: number, number, summary }).collect()
    }

    #[test]
    fn references_follow_replies_and_branch() {
        let summaries = [
            summary(10, "plan", Some("a@x"), &[]),
            summary(20, "Re: plan", Some("b@x"), &["a@x"]),
            summary(30, "Re: plan", Some("c@x"), &["a@x", "b@x"]),
            summary(40, "Re: plan", Some("d@x"), &["a@x"]),
            summary(15, "other", Some("e@x"), &[]),
        ];
        assert_eq!(references(&entries(&summaries)), "(1 (2 3)(4))(5)");
    }

    #[test]
    fn a_missing_parent_keeps_its_replies_together_under_a_dummy() {
        let summaries = [
            summary(20, "Re: gone", Some("b@x"), &["gone@x"]),
            summary(30, "Re: gone", Some("c@x"), &["gone@x"]),
            summary(10, "alone", Some("d@x"), &["nowhere@x"]),
        ];
        assert_eq!(references(&entries(&summaries)), "(3)((1)(2))");
    }

    #[test]
    fn threads_with_the_same_base_subject_join() {
        let summaries = [
            summary(10, "lunch", Some("a@x"), &[]),
            summary(20, "Re: lunch", Some("b@x"), &["lost@x"]),
            summary(30, "Lunch", Some("c@x"), &[]),
        ];
        // The reply joins the first original; the two originals share a dummy.
        assert_eq!(references(&entries(&summaries)), "((1 2)(3))");
    }

    #[test]
    fn a_reference_loop_does_not_hang_or_lose_messages() {
        let summaries = [
            summary(10, "x", Some("a@x"), &["b@x"]),
            summary(20, "y", Some("b@x"), &["a@x"]),
            summary(30, "z", Some("c@x"), &["c@x"]),
        ];
        // 1 names 2 as its parent first; 2 naming 1 would close the loop, so is not followed.
        assert_eq!(references(&entries(&summaries)), "(2 1)(3)");
    }

    #[test]
    fn duplicate_and_missing_message_ids_are_threads_of_their_own() {
        let summaries = [
            summary(10, "one", Some("a@x"), &[]),
            summary(20, "two", Some("a@x"), &[]),
            summary(30, "three", None, &[]),
            summary(40, "Re: one", Some("d@x"), &["a@x"]),
        ];
        assert_eq!(references(&entries(&summaries)), "(1 4)(2)(3)");
    }

    #[test]
    fn a_long_reply_chain_is_threaded_without_recursion() {
        let summaries: Vec<Summary> = (0..20_000)
            .map(|index| {
                let parent = format!("m{}@x", index.max(1) - 1);
                let references: Vec<&str> = if index == 0 { vec![] } else { vec![parent.as_str()] };
                summary(index, "chain", Some(&format!("m{index}@x")), &references)
            })
            .collect();
        let threads = references(&entries(&summaries));
        assert!(threads.starts_with("(1 2 3 "), "{}", &threads[..20]);
        assert!(threads.ends_with(" 20000)"));
    }

    #[test]
    fn ordered_subject_groups_under_the_oldest() {
        let summaries = [
            summary(30, "Re: b", None, &[]),
            summary(10, "b", None, &[]),
            summary(20, "a", None, &[]),
            summary(40, "b (fwd)", None, &[]),
        ];
        assert_eq!(ordered_subject(&entries(&summaries)), "(2 (1)(4))(3)");
    }
}
