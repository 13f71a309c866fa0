//! Search contexts (CONTEXT=SEARCH and CONTEXT=SORT, RFC 5267 §4.3): a SEARCH or SORT with
//! RETURN (UPDATE) keeps its criteria and result, and the session tells the client how the
//! result changes — ADDTO when a message comes to match (delivered, or its flags changed),
//! REMOVEFROM when one stops matching or is expunged (before the EXPUNGE, while its number
//! still holds) — until the mailbox is left or CANCELUPDATE. A SEARCH's result is in mailbox
//! order and its updates name position 0; a SORT's name the position in the sorted result,
//! where a message stays relative to the others, as what SORT compares never changes.

use std::collections::HashSet;

use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::extensions::sort::SortCriterion;
use imap_codec::imap_types::search::SearchKey;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::selection::Selection;
use crate::extended_syntax::SearchExtra;
use crate::response::{self, Status};

/// Contexts a session may keep at once; past that, a search gets `NO [NOUPDATE]` (§4.3.1).
const MOST_CONTEXTS: usize = 16;

/// A SEARCH or SORT whose result the client keeps up to date.
pub(super) struct SearchContext {
    /// The command's tag, which its updates carry.
    tag: String,
    /// UID SEARCH or UID SORT: updates name UIDs, else message numbers.
    uid: bool,
    search: Search,
    /// The UIDs in the result: ascending for a SEARCH, in sort order for a SORT.
    result: Vec<u32>,
}

/// What a context runs again.
#[derive(Clone)]
struct Search {
    criteria: Vec<SearchKey<'static>>,
    keys: Vec<SearchExtra>,
    /// A SORT's keys; `None` for a SEARCH.
    sort: Option<Vec<SortCriterion>>,
}

/// UIDs to insert or remove at a position of a result (1-based; 0 for a SEARCH's).
type Run = (usize, Vec<u32>);

impl Selection {
    /// REMOVEFROM for the contexts that hold messages about to be told as expunged (`expunged`,
    /// ascending): sent before the EXPUNGE, with the numbers the messages have until then
    /// (§4.3.4).
    pub(super) fn context_removals(&mut self, expunged: &[u32]) -> String {
        let mut lines = String::new();
        for index in 0..self.contexts.len() {
            let context = &self.contexts[index];
            let now: Vec<u32> =
                context.result.iter().copied().filter(|uid| expunged.binary_search(uid).is_err()).collect();
            if now.len() == context.result.len() {
                continue;
            }
            lines.push_str(&self.context_changes(context, &now));
            self.contexts[index].result = now;
        }
        lines
    }

    /// The ESEARCH updates that take `context` from its result to `now` (in the same order):
    /// REMOVEFROM first, then ADDTO.
    fn context_changes(&self, context: &SearchContext, now: &[u32]) -> String {
        let (was, is): (HashSet<u32>, HashSet<u32>) =
            (context.result.iter().copied().collect(), now.iter().copied().collect());
        if context.search.sort.is_none() {
            let removed: Vec<u32> = context.result.iter().copied().filter(|uid| !is.contains(uid)).collect();
            let added: Vec<u32> = now.iter().copied().filter(|uid| !was.contains(uid)).collect();
            return self.context_update(context, "REMOVEFROM", &[(0, removed)])
                + &self.context_update(context, "ADDTO", &[(0, added)]);
        }
        // Each removal at the position it has once those before it are gone; then each
        // addition at its position in the new result, in order (§4.3.3, §4.3.4).
        let mut removals: Vec<Run> = Vec::new();
        let mut kept = 0;
        for uid in &context.result {
            if is.contains(uid) {
                kept += 1;
                continue;
            }
            match removals.last_mut() {
                Some((position, run)) if *position == kept + 1 => run.push(*uid),
                _ => removals.push((kept + 1, vec![*uid])),
            }
        }
        let mut additions: Vec<Run> = Vec::new();
        for (index, uid) in now.iter().enumerate().filter(|(_, uid)| !was.contains(uid)) {
            match additions.last_mut() {
                Some((position, run)) if *position + run.len() == index + 1 => run.push(*uid),
                _ => additions.push((index + 1, vec![*uid])),
            }
        }
        self.context_update(context, "REMOVEFROM", &removals) + &self.context_update(context, "ADDTO", &additions)
    }

    /// `* ESEARCH (TAG "t") [UID] ADDTO|REMOVEFROM (position set …)` for `context`; nothing
    /// when `runs` name no message.
    fn context_update(&self, context: &SearchContext, what: &str, runs: &[Run]) -> String {
        let pairs: Vec<String> = runs
            .iter()
            .filter_map(|(position, uids)| {
                let ids: Vec<u32> = if context.uid {
                    uids.clone()
                } else {
                    let number = |uid: &u32| self.uids.binary_search(uid).ok().map(|index| index as u32 + 1);
                    uids.iter().filter_map(number).collect()
                };
                (!ids.is_empty()).then(|| format!("{position} {}", response::sequence_set(&ids)))
            })
            .collect();
        if pairs.is_empty() {
            return String::new();
        }
        let uid = if context.uid { " UID" } else { "" };
        format!("* ESEARCH (TAG \"{}\"){uid} {what} ({})\r\n", context.tag, pairs.join(" "))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether a search with RETURN (UPDATE) and `tag` may start: not when a context already
    /// has that tag (§4.3: BAD, answered here).
    pub(super) fn context_tag_free(&mut self, tag: &Tag<'_>) -> bool {
        let taken = self
            .selected
            .as_ref()
            .is_some_and(|selection| selection.contexts.iter().any(|context| context.tag == tag.inner()));
        if taken {
            self.respond(Some(tag), Status::Bad, None, "Tag reuse: an UPDATE search has this tag");
        }
        !taken
    }

    /// Keeps the search `tag` (a SORT with `sort`) answered with `found` (sequence number,
    /// UID, in the answer's order) as a context, or says NOUPDATE when the session has too
    /// many.
    pub(super) fn keep_context(
        &mut self,
        tag: &Tag<'_>,
        uid: bool,
        (criteria, keys): (&[SearchKey<'_>], &[SearchExtra]),
        sort: Option<&[SortCriterion]>,
        found: &[(u32, u32)],
    ) {
        let Some(selection) = &mut self.selected else { return };
        if selection.contexts.len() >= MOST_CONTEXTS {
            let code = format!("NOUPDATE \"{}\"", tag.inner());
            self.respond(None, Status::No, Some(&code), "Too many search contexts");
            return;
        }
        selection.contexts.push(SearchContext {
            tag: tag.inner().to_string(),
            uid,
            search: Search {
                criteria: criteria.iter().map(|key| key.clone().into_static()).collect(),
                keys: keys.to_vec(),
                sort: sort.map(<[SortCriterion]>::to_vec),
            },
            result: found.iter().map(|&(_, uid)| uid).collect(),
        });
    }

    /// Runs each context's search (and sort) again after messages arrived or their flags
    /// changed, and tells what came to match (ADDTO) and what stopped matching (REMOVEFROM).
    pub(super) async fn update_contexts(&mut self) {
        let Some(selection) = &mut self.selected else { return };
        if !std::mem::take(&mut selection.contexts_stale) || selection.contexts.is_empty() {
            return;
        }
        let searches: Vec<Search> = selection.contexts.iter().map(|context| context.search.clone()).collect();
        for (index, Search { criteria, keys, sort }) in searches.into_iter().enumerate() {
            let found = match self.matching(None, None, (&criteria, &keys)).await {
                Some(matched) => match &sort {
                    Some(sort) => self.sorted(None, sort, &matched.found).await,
                    None => Some(matched.found),
                },
                None => None,
            };
            let Some(selection) = &mut self.selected else { return };
            let Some(found) = found else {
                // A search that cannot run now (the mailstore away) runs after the next change.
                selection.contexts_stale = true;
                continue;
            };
            let Some(context) = selection.contexts.get(index) else { return };
            let now: Vec<u32> = found.iter().map(|&(_, uid)| uid).collect();
            let lines = selection.context_changes(context, &now);
            selection.contexts[index].result = now;
            self.io.write(lines.as_bytes());
        }
    }

    /// CANCELUPDATE (§4.3.5): the contexts of `tags` are told no more.
    pub(super) fn cancel_update(&mut self, tag: &Tag<'_>, tags: &[String]) {
        let Some(selection) = &mut self.selected else {
            self.respond(Some(tag), Status::Bad, None, "No mailbox is selected");
            return;
        };
        if let Some(unknown) =
            tags.iter().find(|wanted| !selection.contexts.iter().any(|context| context.tag == **wanted))
        {
            let text = format!("No UPDATE search has the tag {unknown}");
            self.respond(Some(tag), Status::Bad, None, &text);
            return;
        }
        selection.contexts.retain(|context| !tags.contains(&context.tag));
        self.ok(tag, "CANCELUPDATE completed");
    }
}
