//! GETMETADATA and SETMETADATA (METADATA, RFC 5464): annotations a client keeps on a mailbox,
//! or on the server with the empty mailbox name, stored by the mailstore. GETMETADATA takes
//! MAXSIZE (larger values are left out and the largest told as `[METADATA LONGENTRIES n]`) and
//! DEPTH; SETMETADATA sets and, with NIL, removes, all or none.

use imap_codec::imap_types::core::{NString8, Tag, Vec1};
use imap_codec::imap_types::extensions::metadata::{Depth, Entry, EntryValue, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{
    GetMetadataRequest, METADATA_MAX_VALUE, MetadataDepth, MetadataEntry, SetMetadataRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::Session;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn get_metadata(
        &mut self,
        tag: &Tag<'_>,
        options: &[GetMetadataOption],
        mailbox: &Mailbox<'_>,
        entries: &Vec1<Entry<'_>>,
    ) {
        let Some(name) = self.metadata_mailbox(tag, mailbox) else { return };
        let (mut max_size, mut depth) = (None, MetadataDepth::Zero);
        for option in options {
            match option {
                GetMetadataOption::MaxSize(size) => max_size = Some(*size as usize),
                GetMetadataOption::Depth(Depth::Null) => depth = MetadataDepth::Zero,
                GetMetadataOption::Depth(Depth::One) => depth = MetadataDepth::One,
                GetMetadataOption::Depth(Depth::Infinity) => depth = MetadataDepth::Infinity,
            }
        }
        let request = GetMetadataRequest {
            account_id: self.account_id(),
            mailbox: name.clone(),
            entries: entries
                .as_ref()
                .iter()
                .map(|entry| String::from_utf8_lossy(entry.as_ref()).into_owned())
                .collect(),
            depth: depth as i32,
        };
        let found = match self.services.mailstore.clone().get_metadata(request).await {
            Ok(response) => response.into_inner().entries,
            Err(status) => return self.metadata_refused(tag, &status),
        };
        let mut longest_left_out = 0;
        let mut items = Vec::new();
        for entry in found {
            match &entry.value {
                Some(value) if max_size.is_some_and(|max| value.len() > max) => {
                    longest_left_out = longest_left_out.max(value.len());
                }
                _ => items.push(entry),
            }
        }
        if !items.is_empty() {
            let mut line = format!("* METADATA {} (", self.quoted_name(&name)).into_bytes();
            for (index, entry) in items.iter().enumerate() {
                if index > 0 {
                    line.push(b' ');
                }
                line.extend_from_slice(entry.name.as_bytes());
                line.push(b' ');
                value(&mut line, entry.value.as_deref());
            }
            line.extend_from_slice(b")\r\n");
            self.io.write(&line);
        }
        if longest_left_out > 0 {
            let code = format!("METADATA LONGENTRIES {longest_left_out}");
            self.respond(Some(tag), Status::Ok, Some(&code), "GETMETADATA completed");
        } else {
            self.ok(tag, "GETMETADATA completed");
        }
    }

    pub(super) async fn set_metadata(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, values: &Vec1<EntryValue<'_>>) {
        let Some(name) = self.metadata_mailbox(tag, mailbox) else { return };
        let entries: Vec<MetadataEntry> = values
            .as_ref()
            .iter()
            .map(|entry_value| MetadataEntry {
                name: String::from_utf8_lossy(entry_value.entry.as_ref()).into_owned(),
                value: match &entry_value.value {
                    NString8::NString(nstring) => nstring.0.as_ref().map(|value| value.as_ref().to_vec()),
                    NString8::Literal8(literal) => Some(literal.data.to_vec()),
                },
            })
            .collect();
        let request = SetMetadataRequest { account_id: self.account_id(), mailbox: name, entries };
        match self.services.mailstore.clone().set_metadata(request).await {
            Ok(_) => self.ok(tag, "SETMETADATA completed"),
            Err(status) => self.metadata_refused(tag, &status),
        }
    }

    /// The mailbox whose entries are meant: the empty name for the server's, else a mailbox.
    fn metadata_mailbox(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Option<String> {
        match mailbox {
            Mailbox::Other(other) if other.inner().as_ref().is_empty() => Some(String::new()),
            _ => self.name(tag, mailbox),
        }
    }

    /// What the mailstore refused, with RFC 5464's codes.
    fn metadata_refused(&mut self, tag: &Tag<'_>, status: &tonic::Status) {
        match status.code() {
            Code::InvalidArgument => self.respond(Some(tag), Status::Bad, None, status.message()),
            Code::OutOfRange => {
                let code = format!("METADATA MAXSIZE {METADATA_MAX_VALUE}");
                self.respond(Some(tag), Status::No, Some(&code), "Value too large");
            }
            Code::ResourceExhausted => {
                self.respond(Some(tag), Status::No, Some("METADATA TOOMANY"), "Too many entries");
            }
            _ => self.mailstore_refused(tag, status),
        }
    }
}

/// A METADATA value: NIL, a quoted string when it can be one, else a literal (`~{n}` when it
/// holds a NUL).
fn value(line: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else {
        line.extend_from_slice(b"NIL");
        return;
    };
    if value.iter().all(|&byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\') {
        line.push(b'"');
        line.extend_from_slice(value);
        line.push(b'"');
        return;
    }
    let prefix = if value.contains(&0) { "~" } else { "" };
    line.extend(format!("{prefix}{{{}}}\r\n", value.len()).bytes());
    line.extend_from_slice(value);
}
