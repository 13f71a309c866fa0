//! NOTIFY (RFC 5465): the client says which events it wants, for the selected mailbox and for
//! others, and hears of them as they happen — between commands and during IDLE, not only
//! when it sends one. Events come from the account's event subject, so a change made through
//! any frontend reaches every session that watches the mailbox.
//!
//! - The selected mailbox (SELECTED, SELECTED-DELAYED): EXISTS with the FETCH items MessageNew
//!   names, EXPUNGE or VANISHED (held for a command with SELECTED-DELAYED), FETCH with UID and
//!   FLAGS.
//! - Other mailboxes: STATUS with what changed (§5.1–5.3), LIST for a mailbox created, deleted
//!   or renamed (§5.4) and for a name subscribed or unsubscribed (§5.5).

use futures::StreamExt;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use kubemail_proto::Message;
use kubemail_proto::events::account_pattern;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::{ListMailboxesResponse, MailboxInfo};
use kubemail_runtime::EventStream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::fetch::fetch_items;
use super::list::{is_child, special_use};
use super::selection::Selection;
use crate::extended_syntax::{NotifyEvent, NotifyMailboxes, NotifySet};
use crate::mailbox_name::SEPARATOR;
use crate::response::Status;

/// The events this server sends, as BADEVENT lists them (RFC 5465 §3.1).
const SUPPORTED: &str =
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange";

/// What a session's NOTIFY SET asked for.
pub(super) struct Notify {
    /// Message events of the selected mailbox; `None` when SELECTED was not asked for.
    selected: Option<SelectedEvents>,
    /// What is watched in the other mailboxes.
    watches: Vec<Watch>,
    /// The account's events, for the other mailboxes; `None` when none is watched.
    events: Option<EventStream>,
}

struct SelectedEvents {
    /// SELECTED-DELAYED: expunges wait for a command that may carry them (§6.1.2).
    delayed: bool,
    /// The FETCH items to send with each new message.
    fetch: Option<MacroOrMessageDataItemNames<'static>>,
}

/// One event group on mailboxes other than the selected one.
struct Watch {
    mailboxes: Mailboxes,
    /// MessageNew and MessageExpunge (always asked for together).
    messages: bool,
    flags: bool,
    names: bool,
    subscriptions: bool,
    mailbox_metadata: bool,
    server_metadata: bool,
}

enum Mailboxes {
    /// PERSONAL and INBOXES: every mailbox of the account (INBOXES as PERSONAL, §6.3).
    Every,
    Subscribed,
    Subtree(Vec<String>),
    Exact(Vec<String>),
}

impl Watch {
    fn covers(&self, name: &str, subscribed: bool) -> bool {
        match &self.mailboxes {
            Mailboxes::Every => true,
            Mailboxes::Subscribed => subscribed,
            Mailboxes::Subtree(roots) => roots.iter().any(|root| name == root || is_child(name, root)),
            Mailboxes::Exact(names) => names.iter().any(|watched| watched == name),
        }
    }
}

/// What woke a session that waits for a command.
pub(super) enum Notification {
    /// An event of the account, for the selected mailbox (from the selection's subscription)
    /// or another (from NOTIFY's).
    Selected(MailboxEvent),
    Other(MailboxEvent),
    /// A subscription ended: notifications stop.
    Ended,
}

/// The next notification for a session with NOTIFY set; never ready without one.
pub(super) async fn next_notification(notify: &mut Option<Notify>, selected: &mut Option<Selection>) -> Notification {
    let watch_selected = notify.as_ref().is_some_and(|notify| notify.selected.is_some());
    // Without a mailbox selected there is nothing to watch there (yet).
    let selection = selected.as_mut().filter(|_| watch_selected);
    let watching = selection.is_some();
    tokio::select! {
        event = async { selection?.updates.next().await }, if watching => match event {
            Some((event, _span)) => Notification::Selected(event),
            None => Notification::Ended,
        },
        notification = next_other(notify) => notification,
    }
}

/// The next event of a mailbox other than the selected one that NOTIFY may tell; never ready
/// when no other mailbox is watched.
pub(super) async fn next_other(notify: &mut Option<Notify>) -> Notification {
    let Some(events) = notify.as_mut().and_then(|notify| notify.events.as_mut()) else {
        return std::future::pending().await;
    };
    loop {
        match events.next().await.map(|event| MailboxEvent::decode(event.payload)) {
            Some(Ok(event)) => return Notification::Other(event),
            Some(Err(_)) => continue,
            None => return Notification::Ended,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// NOTIFY SET or, with `None`, NOTIFY NONE.
    pub(super) async fn notify_command(&mut self, tag: &Tag<'_>, set: Option<NotifySet>) {
        let Some(set) = set else {
            self.notify = None;
            self.set_flag_updates_with_uid();
            self.ok(tag, "NOTIFY completed");
            return;
        };
        let unsupported: Vec<&str> = set
            .groups
            .iter()
            .flat_map(|group| &group.events)
            .filter_map(|event| match event {
                NotifyEvent::Unsupported(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if !unsupported.is_empty() {
            let text = format!("Events not sent here: {}", unsupported.join(" "));
            self.respond(Some(tag), Status::No, Some(&format!("BADEVENT ({SUPPORTED})")), &text);
            return;
        }
        let Some(notify) = self.notify_from(tag, &set).await else { return };
        let watches_status = notify.watches.iter().any(|watch| watch.messages || watch.flags);
        self.notify = Some(notify);
        self.set_flag_updates_with_uid();
        if set.status && watches_status {
            let Some(listing) = self.mailboxes(tag).await else { return };
            let selected_id = self.selected.as_ref().map(|selection| selection.mailbox_id);
            for mailbox in listing.mailboxes.iter().filter(|mailbox| Some(mailbox.id) != selected_id) {
                let watched = self.watches(&mailbox.name, mailbox.subscribed, |watch| watch.messages || watch.flags);
                if watched {
                    let line = self.status_line(mailbox, true);
                    self.io.write(line.as_bytes());
                }
            }
        }
        // NOTIFY SET is a NOOP too (§3.1): what changed in the selected mailbox goes first.
        self.ok(tag, "NOTIFY completed");
    }

    /// The [`Notify`] of `set`, its mailbox names decoded and its FETCH items read; `None`
    /// after answering why not.
    async fn notify_from(&mut self, tag: &Tag<'_>, set: &NotifySet) -> Option<Notify> {
        let mut notify = Notify { selected: None, watches: Vec::new(), events: None };
        for group in &set.groups {
            let has = |wanted: fn(&NotifyEvent) -> bool| group.events.iter().any(wanted);
            let delayed = match &group.mailboxes {
                NotifyMailboxes::Selected => false,
                NotifyMailboxes::SelectedDelayed => true,
                _ => {
                    let mailboxes = match &group.mailboxes {
                        NotifyMailboxes::Subtree(names) => Mailboxes::Subtree(self.decode_names(tag, names)?),
                        NotifyMailboxes::Mailboxes(names) => Mailboxes::Exact(self.decode_names(tag, names)?),
                        NotifyMailboxes::Subscribed => Mailboxes::Subscribed,
                        _ => Mailboxes::Every,
                    };
                    notify.watches.push(Watch {
                        mailboxes,
                        messages: has(|event| matches!(event, NotifyEvent::MessageNew(_))),
                        flags: has(|event| matches!(event, NotifyEvent::FlagChange)),
                        names: has(|event| matches!(event, NotifyEvent::MailboxName)),
                        subscriptions: has(|event| matches!(event, NotifyEvent::SubscriptionChange)),
                        mailbox_metadata: has(|event| matches!(event, NotifyEvent::MailboxMetadataChange)),
                        server_metadata: has(|event| matches!(event, NotifyEvent::ServerMetadataChange)),
                    });
                    continue;
                }
            };
            if group.events.is_empty() {
                // SELECTED NONE: no message events for the selected mailbox.
                continue;
            }
            let items = group.events.iter().find_map(|event| match event {
                NotifyEvent::MessageNew(items) => items.clone(),
                _ => None,
            });
            let fetch = match items {
                Some(items) => match fetch_items(&items) {
                    Some(items) => Some(items),
                    None => {
                        self.respond(Some(tag), Status::Bad, None, "Malformed FETCH items after MessageNew");
                        return None;
                    }
                },
                None => None,
            };
            notify.selected = Some(SelectedEvents { delayed, fetch });
        }
        if !notify.watches.is_empty() {
            match self.services.events.subscribe(&account_pattern(self.account_id())).await {
                Ok(events) => notify.events = Some(events),
                Err(error) => {
                    tracing::warn!(client = %self.client_ip, %error, "subscribing to mailbox events failed");
                    self.respond(Some(tag), Status::No, Some("UNAVAILABLE"), "Try again later");
                    return None;
                }
            }
        }
        Some(notify)
    }

    fn decode_names(&mut self, tag: &Tag<'_>, names: &[Vec<u8>]) -> Option<Vec<String>> {
        names.iter().map(|wire| self.decode_name(tag, wire)).collect()
    }

    /// Whether a watch that `wanted` accepts covers the mailbox `name`.
    fn watches(&self, name: &str, subscribed: bool, wanted: impl Fn(&Watch) -> bool) -> bool {
        self.notify
            .as_ref()
            .is_some_and(|notify| notify.watches.iter().any(|watch| wanted(watch) && watch.covers(name, subscribed)))
    }

    /// A FETCH response about flags carries the UID once NOTIFY watches the selected mailbox
    /// (RFC 5465 §5.1).
    pub(super) fn set_flag_updates_with_uid(&mut self) {
        let with_uid = self.notifies_selected();
        if let Some(selection) = &mut self.selected {
            selection.flag_updates_with_uid = with_uid;
        }
    }

    /// Tells the client what `notification` is about, at once.
    pub(super) async fn notified(&mut self, notification: Notification) {
        match notification {
            Notification::Selected(event) => self.selected_changed(event, false).await,
            Notification::Other(event) => self.other_changed(event).await,
            Notification::Ended => {
                // The event bus went away: said once, then no more notifications (§5.8).
                self.notify = None;
                self.io.write(b"* OK [NOTIFICATIONOVERFLOW] Notifications stopped\r\n");
            }
        }
        let _ = self.io.flush().await;
    }

    /// Whether NOTIFY watches the selected mailbox.
    pub(super) fn notifies_selected(&self) -> bool {
        self.notify.as_ref().is_some_and(|notify| notify.selected.is_some())
    }

    /// A change in the selected mailbox, told as IDLE tells it, with the FETCH items asked for
    /// new messages; expunges wait with SELECTED-DELAYED unless `in_idle`.
    pub(super) async fn selected_changed(&mut self, event: MailboxEvent, in_idle: bool) {
        let condstore = self.condstore;
        let Some(events) = self.notify.as_ref().and_then(|notify| notify.selected.as_ref()) else { return };
        let (delayed, fetch) = (events.delayed, events.fetch.clone());
        let Some(selection) = &mut self.selected else { return };
        let before = selection.uids.len();
        let mut lines = selection.apply(event, condstore);
        if !delayed || in_idle {
            lines.push_str(&selection.take_expunges());
        }
        let new: Vec<(u32, u32)> =
            selection.uids.iter().enumerate().skip(before).map(|(index, uid)| (index as u32 + 1, *uid)).collect();
        self.io.write(lines.as_bytes());
        // \Recent taken, and the flags the new messages were stored with read, first.
        self.read_new_flags().await;
        if let (Some(items), false) = (fetch, new.is_empty()) {
            self.fetch_untagged(new, &items).await;
        }
        // ADDTO and REMOVEFROM after the FETCH (RFC 5465 §5.1, §5.2).
        self.update_contexts().await;
    }

    /// A change in another mailbox of the account: STATUS or LIST, when a watch covers it.
    async fn other_changed(&mut self, event: MailboxEvent) {
        let selected_id = self.selected.as_ref().map(|selection| selection.mailbox_id);
        let Some(change) = &event.change else { return };
        let message_event = matches!(change, Change::Added(_) | Change::Expunged(_) | Change::Flags(_));
        if message_event && Some(event.mailbox_id) == selected_id {
            // SELECTED (or its absence) governs the selected mailbox's message events.
            return;
        }
        let wanted: fn(&Watch) -> bool = match change {
            Change::Added(_) | Change::Expunged(_) => |watch| watch.messages,
            Change::Flags(_) => |watch| watch.flags,
            Change::Created(_) | Change::Deleted(_) | Change::Renamed(_) => |watch| watch.names,
            Change::Subscription(_) => |watch| watch.subscriptions,
            Change::Metadata(changed) if changed.mailbox.is_empty() => |watch| watch.server_metadata,
            Change::Metadata(_) => |watch| watch.mailbox_metadata,
        };
        // Most events concern nothing this session watches: the mailstore is asked only for
        // those that may.
        let Some(notify) = &self.notify else { return };
        if !notify.watches.iter().any(wanted) {
            return;
        }
        let listing = match self.list_mailboxes().await {
            Ok(listing) => listing,
            Err(status) => {
                // A notification is a hint: the next command reads the mailbox anew.
                tracing::warn!(client = %self.client_ip, %status, "a notification could not read the mailboxes");
                return;
            }
        };
        let line = match change {
            Change::Added(_) | Change::Expunged(_) | Change::Flags(_) => {
                let Some(mailbox) = listing.mailboxes.iter().find(|mailbox| mailbox.id == event.mailbox_id) else {
                    return;
                };
                if !self.watches(&mailbox.name, mailbox.subscribed, wanted) {
                    return;
                }
                self.status_line(mailbox, !matches!(change, Change::Flags(_)))
            }
            Change::Created(created) => self.name_line(&listing, &created.name, None, wanted),
            Change::Deleted(deleted) => self.name_line(&listing, &deleted.name, None, wanted),
            Change::Renamed(renamed) => self.name_line(&listing, &renamed.to, Some(&renamed.from), wanted),
            Change::Subscription(changed) => self.name_line(&listing, &changed.name, None, wanted),
            Change::Metadata(changed) => self.metadata_line(&listing, &changed.mailbox, &changed.entries),
        };
        self.io.write(line.as_bytes());
    }

    /// STATUS for a watched mailbox (§5.1–5.3): MESSAGES and UIDNEXT after new or expunged
    /// messages, UIDVALIDITY and UNSEEN always, HIGHESTMODSEQ once CONDSTORE is on.
    fn status_line(&self, mailbox: &MailboxInfo, messages: bool) -> String {
        let mut items = Vec::new();
        if messages {
            items.push(format!("MESSAGES {} UIDNEXT {}", mailbox.messages, mailbox.uidnext));
        }
        items.push(format!("UIDVALIDITY {} UNSEEN {}", mailbox.uidvalidity, mailbox.unseen));
        if self.condstore {
            items.push(format!("HIGHESTMODSEQ {}", mailbox.highest_modseq));
        }
        format!("* STATUS {} ({})\r\n", self.quoted_name(&mailbox.name), items.join(" "))
    }

    /// LIST for a mailbox name that was created, deleted, renamed from `old_name`, subscribed
    /// or unsubscribed (§5.4, §5.5), with its attributes as they are now; empty when no watch
    /// that `wanted` accepts covers it.
    fn name_line(
        &self,
        listing: &ListMailboxesResponse,
        name: &str,
        old_name: Option<&str>,
        wanted: impl Fn(&Watch) -> bool,
    ) -> String {
        let mailbox = listing.mailboxes.iter().find(|mailbox| mailbox.name == name);
        let subscribed = mailbox.map_or_else(
            || listing.subscribed_without_mailbox.iter().any(|other| other == name),
            |mailbox| mailbox.subscribed,
        );
        if !self.watches(name, subscribed, wanted) {
            return String::new();
        }
        let mut attributes = Vec::new();
        match mailbox {
            Some(mailbox) => {
                attributes.extend(special_use(&mailbox.special_use));
                let has_children = listing.mailboxes.iter().any(|other| is_child(&other.name, name));
                attributes.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
            }
            None => attributes.push("\\NonExistent"),
        }
        if subscribed {
            attributes.push("\\Subscribed");
        }
        let old_name = old_name.map_or_else(String::new, |old| format!(" (\"OLDNAME\" ({}))", self.quoted_name(old)));
        format!("* LIST ({}) \"{SEPARATOR}\" {}{old_name}\r\n", attributes.join(" "), self.quoted_name(name))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The unsolicited METADATA response (RFC 5464 §4.4.2) naming the entries that changed on
    /// `mailbox` (empty: the server's), when a watch asks for it (§5.6, §5.7).
    fn metadata_line(&self, listing: &ListMailboxesResponse, mailbox: &str, entries: &[String]) -> String {
        // The server's entries belong to no mailbox: a watch that asks for them covers them.
        let subscribed = listing.mailboxes.iter().any(|other| other.name == mailbox && other.subscribed);
        if entries.is_empty()
            || (!mailbox.is_empty() && !self.watches(mailbox, subscribed, |watch| watch.mailbox_metadata))
        {
            return String::new();
        }
        format!("* METADATA {} {}\r\n", self.quoted_name(mailbox), entries.join(" "))
    }
}
