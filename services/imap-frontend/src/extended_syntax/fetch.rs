//! FETCH items beyond imap-codec: PREVIEW (RFC 8970) and the drafts before it that clients of
//! Dovecot still send (SNIPPET=FUZZY, PREVIEW=FUZZY: `SNIPPET (FUZZY)`, `PREVIEW (FUZZY)`),
//! SAVEDATE (RFC 8514), EMAILID and THREADID (RFC 8474).

use super::{Cursor, Extension};

/// A FETCH item imap-codec does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchExtra {
    /// PREVIEW, or PREVIEW (LAZY) (RFC 8970).
    Preview,
    /// The drafts' form, `PREVIEW (FUZZY)` or `SNIPPET (FUZZY)`, answered in kind with the
    /// item's name: `SNIPPET (FUZZY "text")`.
    FuzzyPreview { snippet: bool },
    /// SAVEDATE (RFC 8514).
    SaveDate,
    /// EMAILID (RFC 8474).
    EmailId,
    /// THREADID (RFC 8474).
    ThreadId,
}

impl FetchExtra {
    /// Whether the item is a preview of the message's text, in either form.
    pub fn is_preview(&self) -> bool {
        matches!(self, FetchExtra::Preview | FetchExtra::FuzzyPreview { .. })
    }
}

/// `FETCH set items [modifiers]` whose items include one of [`FetchExtra`].
pub(super) fn fetch(
    cursor: &mut Cursor<'_>,
    tag: &[u8],
    uid: bool,
) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a sequence set")?;
    let set = cursor.atom().ok_or("Expected a sequence set")?;
    cursor.space().ok_or("Expected FETCH items")?;
    let listed = cursor.peek() == Some(b'(');
    if listed {
        cursor.at += 1;
    }
    let (mut kept, mut extra) = (Vec::new(), Vec::new());
    loop {
        let item = cursor.fetch_item().ok_or("Malformed FETCH item")?;
        let known = match item.to_ascii_uppercase().as_slice() {
            b"PREVIEW" => Some(FetchExtra::Preview),
            b"SNIPPET" => Some(FetchExtra::FuzzyPreview { snippet: true }),
            b"SAVEDATE" => Some(FetchExtra::SaveDate),
            b"EMAILID" => Some(FetchExtra::EmailId),
            b"THREADID" => Some(FetchExtra::ThreadId),
            _ => None,
        };
        match known {
            Some(FetchExtra::Preview | FetchExtra::FuzzyPreview { .. })
                if cursor.rest().len() > 1 && cursor.rest()[1] == b'(' =>
            {
                // The preview is made here at once, so LAZY changes nothing; FUZZY names the
                // one algorithm there is, and asks for the drafts' answer.
                cursor.space().ok_or("Malformed PREVIEW modifiers")?;
                let mut fuzzy = known == Some(FetchExtra::FuzzyPreview { snippet: true });
                for modifier in cursor.list(Cursor::atom).ok_or("Malformed PREVIEW modifiers")? {
                    match modifier.to_ascii_uppercase().as_slice() {
                        b"LAZY" => {}
                        b"FUZZY" | b"LAZY=FUZZY" => fuzzy = true,
                        _ => return Err("Unknown PREVIEW modifier"),
                    }
                }
                extra.push(match (known, fuzzy) {
                    (Some(FetchExtra::FuzzyPreview { snippet }), _) => FetchExtra::FuzzyPreview { snippet },
                    (_, true) => FetchExtra::FuzzyPreview { snippet: false },
                    _ => FetchExtra::Preview,
                });
            }
            Some(known) => extra.push(known),
            None => kept.push(item),
        }
        if !listed || cursor.peek() == Some(b')') {
            break;
        }
        cursor.space().ok_or("Malformed FETCH items")?;
    }
    if listed {
        cursor.at += 1;
    }
    if extra.is_empty() {
        return Ok(None);
    }
    let placeholder = kept.is_empty();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(if uid { b" UID FETCH " } else { b" FETCH " });
    rewritten.extend_from_slice(set);
    rewritten.extend_from_slice(b" (");
    rewritten.extend_from_slice(&if placeholder { b"UID".to_vec() } else { kept.join(&b' ') });
    rewritten.push(b')');
    rewritten.extend_from_slice(cursor.rest());
    Ok(Some((rewritten, Extension::Fetch { extra, placeholder })))
}

impl<'a> Cursor<'a> {
    /// One FETCH item as written: an atom that may carry a section in brackets, with spaces
    /// and parentheses inside (`BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>`).
    pub(super) fn fetch_item(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut depth = 0usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'[' => depth += 1,
                b']' => depth = depth.checked_sub(1)?,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.at += 1;
        }
        (self.at > start && depth == 0).then(|| &self.bytes[start..self.at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn fetch_items_imap_codec_lacks_are_taken_out() {
        let (command, extension) = rewritten(
            "f UID FETCH 1:* (FLAGS PREVIEW (LAZY) BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10> EMAILID) (CHANGEDSINCE 5)\r\n",
        );
        assert_eq!(command, "f UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>) (CHANGEDSINCE 5)\r\n");
        let extra = vec![FetchExtra::Preview, FetchExtra::EmailId];
        assert_eq!(extension, Extension::Fetch { extra, placeholder: false });
        let (command, extension) = rewritten("g FETCH 2 savedate\r\n");
        assert_eq!(command, "g FETCH 2 (UID)\r\n");
        assert_eq!(extension, Extension::Fetch { extra: vec![FetchExtra::SaveDate], placeholder: true });
        assert_eq!(rewrite(b"h FETCH 1 (FLAGS BOGUS)\r\n"), Ok(None), "imap-codec's to refuse");
        assert_eq!(rewrite(b"h FETCH 1 (PREVIEW (EAGER))\r\n"), Err("Unknown PREVIEW modifier"));
        let (_, extension) = rewritten("i FETCH 1 (SNIPPET (LAZY=FUZZY) PREVIEW (FUZZY) PREVIEW (LAZY) SNIPPET)\r\n");
        let extra = vec![
            FetchExtra::FuzzyPreview { snippet: true },
            FetchExtra::FuzzyPreview { snippet: false },
            FetchExtra::Preview,
            FetchExtra::FuzzyPreview { snippet: true },
        ];
        assert_eq!(extension, Extension::Fetch { extra, placeholder: true });
    }
}
