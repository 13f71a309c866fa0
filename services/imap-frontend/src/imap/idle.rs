//! IDLE (RFC 9051 §6.3.13, RFC 2177): the session waits for the client's DONE, the selected
//! mailbox's events, a keep-alive tick and shutdown at once, and tells each change as it comes;
//! with NOTIFY, the events it asked for (RFC 5465 §4).

use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{End, Input};
use super::{Flow, Session, notify};
use crate::response::Status;

/// What ends an IDLE.
enum IdleEnd {
    Done,
    Close,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// IDLE (RFC 2177, RFC 9051 §6.3.13): changes are told as they happen until the client
    /// sends DONE. A keep-alive every `idle_keepalive` keeps NAT boxes from dropping the
    /// connection; the autologout timer still applies.
    pub(super) async fn idle(&mut self, tag: &Tag<'_>) -> Flow {
        self.report_changes();
        self.io.write(b"+ idling\r\n");
        let settings = self.services.settings.clone();
        let shutdown = self.services.shutdown.clone();
        let deadline = tokio::time::Instant::now() + settings.idle_timeout;
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + settings.idle_keepalive, settings.idle_keepalive);
        let end = loop {
            if self.io.flush().await.is_err() {
                break IdleEnd::Close;
            }
            let (condstore, notifies_selected) = (self.condstore, self.notifies_selected());
            let Some(selection) = &mut self.selected else { break IdleEnd::Close };
            tokio::select! {
                done = self.io.read_idle_done(deadline.saturating_duration_since(tokio::time::Instant::now())) => {
                    break match done {
                        Ok(Input::Message(())) => IdleEnd::Done,
                        Ok(_) => {
                            self.respond(Some(tag), Status::Bad, None, "Expected DONE");
                            return Flow::Continue;
                        }
                        Err(End::Timeout) => {
                            self.bye(None, "Autologout: idle for too long");
                            IdleEnd::Close
                        }
                        Err(_) => IdleEnd::Close,
                    };
                }
                event = selection.updates.next() => {
                    let Some((event, span)) = event else { break IdleEnd::Close };
                    if notifies_selected {
                        // As NOTIFY asked, with the FETCH items for new messages (RFC 5465 §4).
                        self.selected_changed(event, true).await;
                        continue;
                    }
                    let _told = span.enter();
                    let mut lines = selection.apply(event, condstore);
                    lines.push_str(&selection.take_expunges());
                    self.io.write(lines.as_bytes());
                    drop(_told);
                    self.claim_new_recent().await;
                    self.update_contexts().await;
                }
                notification = notify::next_other(&mut self.notify) => self.notified(notification).await,
                _ = keepalive.tick() => self.io.write(b"* OK Still here\r\n"),
                () = shutdown.wait() => {
                    self.bye(None, "Server shutting down, please reconnect");
                    break IdleEnd::Close;
                }
            }
        };
        match end {
            IdleEnd::Done => {
                self.ok(tag, "IDLE terminated");
                Flow::Continue
            }
            IdleEnd::Close => Flow::Close,
        }
    }
}
