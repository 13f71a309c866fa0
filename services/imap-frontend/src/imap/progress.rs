//! INPROGRESS (RFC 9585): a command that takes a while tells the client how far it got, as
//! `* OK [INPROGRESS ("tag" count goal)]`, no more often than the settings say, so a client
//! can show progress rather than think the server hung. A count or goal not known is NIL.

use std::time::Duration;

use imap_codec::imap_types::core::Tag;
use tokio::time::Instant;

/// The progress of one command.
pub(super) struct Progress {
    tag: String,
    interval: Duration,
    last_told: Instant,
}

impl Progress {
    /// For the command `tag`, told every `interval` from now on.
    pub fn new(tag: &Tag<'_>, interval: Duration) -> Progress {
        Progress { tag: tag.inner().to_string(), interval, last_told: Instant::now() }
    }

    /// The response that tells `done` of `goal` with `text`, when `interval` has passed since
    /// the command started or was last told of.
    pub fn tick(&mut self, done: Option<usize>, goal: Option<usize>, text: &str) -> Option<String> {
        if self.last_told.elapsed() < self.interval {
            return None;
        }
        self.last_told = Instant::now();
        let number = |value: Option<usize>| value.map_or_else(|| "NIL".to_string(), |value| value.to_string());
        Some(format!("* OK [INPROGRESS (\"{}\" {} {})] {text}\r\n", self.tag, number(done), number(goal)))
    }
}
