//! IMAP URLs (RFC 5092) of messages and parts on this server, as CATENATE (RFC 4469) names
//! them: `/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]` (URL-PARTIAL,
//! RFC 5550), relative to the session's own account. An absolute URL (another server, or this
//! one by its name) is not followed.

use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Section};
use kubemail_message::mime;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::fetch::fetch_items;
use super::fetch::section_data;

/// A message, or a part of one, that a URL names.
#[derive(Debug, PartialEq, Eq)]
struct MessageUrl {
    mailbox: String,
    uidvalidity: Option<u32>,
    uid: u32,
    section: Option<Section<'static>>,
    /// PARTIAL: the offset, and the length when given.
    partial: Option<(usize, Option<usize>)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The octets `url` names in the session's account, as FETCH BODY[section]<partial> would
    /// give them; `None` when it names nothing that can be read (the caller says BADURL).
    pub(super) async fn url_octets(&mut self, url: &str) -> Option<Vec<u8>> {
        let url = parse(url)?;
        let listing = self.list_mailboxes().await.ok()?;
        let mailbox = listing.mailboxes.iter().find(|mailbox| mailbox.name == url.mailbox)?;
        if url.uidvalidity.is_some_and(|uidvalidity| uidvalidity != mailbox.uidvalidity) {
            return None;
        }
        let mut bodies = self.bodies(None, (self.account_id(), mailbox.id), &[url.uid], false, false).await?;
        let body = bodies.next().await?.ok()?;
        let parsed = url.section.as_ref().and_then(|_| mime::parse(&body.octets));
        let header_end = body.meta.as_ref().map_or(0, |meta| meta.header_size as usize).min(body.octets.len());
        let (_, data) = section_data(url.section.as_ref(), &body.octets, header_end, parsed.as_deref());
        let data = data?;
        Some(match url.partial {
            Some((offset, length)) => {
                let start = offset.min(data.len());
                let end = length.map_or(data.len(), |length| start.saturating_add(length).min(data.len()));
                data[start..end].to_vec()
            }
            None => data,
        })
    }
}

/// `url` read, when it is a relative message URL this server follows.
fn parse(url: &str) -> Option<MessageUrl> {
    let path = url.strip_prefix('/')?;
    let mut segments = path.split("/;");
    let first = segments.next()?;
    let (mailbox, uidvalidity) = match first.split_once(';') {
        Some((mailbox, parameter)) => {
            let value = parameter.get(..12).filter(|key| key.eq_ignore_ascii_case("UIDVALIDITY="))?;
            (mailbox, Some(parameter[value.len()..].parse().ok()?))
        }
        None => (first, None),
    };
    let mailbox = percent_decoded(mailbox)?;
    let (mut uid, mut section, mut partial) = (None, None, None);
    for segment in segments {
        let (key, value) = segment.split_once('=')?;
        match key.to_ascii_uppercase().as_str() {
            "UID" if uid.is_none() => uid = Some(value.parse().ok().filter(|&uid: &u32| uid > 0)?),
            "SECTION" if section.is_none() && uid.is_some() => section = Some(fetch_section(&percent_decoded(value)?)?),
            "PARTIAL" if partial.is_none() && uid.is_some() => {
                partial = Some(match value.split_once('.') {
                    Some((offset, length)) => (offset.parse().ok()?, Some(length.parse().ok()?)),
                    None => (value.parse().ok()?, None),
                });
            }
            _ => return None,
        }
    }
    Some(MessageUrl { mailbox, uidvalidity, uid: uid?, section, partial })
}

/// `%XX` escapes undone; the name is UTF-8 (RFC 5092 §3.2).
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// A section as FETCH reads one (`1.2`, `HEADER`, `2.MIME`), read by imap-codec.
fn fetch_section(text: &str) -> Option<Section<'static>> {
    let MacroOrMessageDataItemNames::MessageDataItemNames(items) =
        fetch_items(format!("BODY.PEEK[{text}]").as_bytes())?
    else {
        return None;
    };
    match items.as_slice() {
        [MessageDataItemName::BodyExt { section: Some(section), .. }] => Some(section.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_urls_are_read() {
        let url = parse("/Drafts;UIDVALIDITY=385759045/;UID=20/;SECTION=1.MIME/;PARTIAL=0.10").unwrap();
        assert_eq!((url.mailbox.as_str(), url.uidvalidity, url.uid), ("Drafts", Some(385_759_045), 20));
        assert!(matches!(url.section, Some(Section::Mime(_))));
        assert_eq!(url.partial, Some((0, Some(10))));
        let url = parse("/Gr%C3%BC%C3%9Fe/;uid=3/;section=HEADER.FIELDS%20(FROM%20TO)").unwrap();
        assert_eq!(url.mailbox, "Grüße");
        assert!(matches!(url.section, Some(Section::HeaderFields(None, _))));
        for refused in [
            "imap://alice@example.org/INBOX/;UID=1",
            "/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;SECTION=1",
            "/INBOX/;UID=1/;SECTION=BOGUS",
            "/INBOX;UIDVALIDITY=x/;UID=1",
            "/IN%ZZBOX/;UID=1",
        ] {
            assert_eq!(parse(refused), None, "{refused}");
        }
    }
}
