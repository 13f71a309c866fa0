//! Chosen header fields, as `BODY[HEADER.FIELDS (…)]` and `BODY[HEADER.FIELDS.NOT (…)]` give
//! them, and the fields clients ask for on every sync ([`COMMON_FIELDS`]), whose lines the
//! cached items keep so that such a FETCH reads no body.

/// The header fields mail clients fetch for their message lists: Thunderbird's and K-9's
/// lists, and what an ENVELOPE is made of. A HEADER.FIELDS of these only is
/// answered from the cached items.
pub const COMMON_FIELDS: &[&str] = &[
    "Date",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Priority",
    "X-Priority",
    "Importance",
    "Newsgroups",
    "List-Id",
    "Chat-Version",
    "X-K9mail-Identity",
];

/// Whether every name of `names` is one of [`COMMON_FIELDS`] (ASCII case aside).
pub fn all_common<N: AsRef<[u8]>>(names: &[N]) -> bool {
    names.iter().all(|name| COMMON_FIELDS.iter().any(|common| common.as_bytes().eq_ignore_ascii_case(name.as_ref())))
}

/// The lines of `header` (which may run on into the body: it ends at the first empty line) of
/// the fields named in `names` (ASCII case aside), or with `wanted` false of all others, each
/// with its continuation lines, and the blank line that ends a header. Applied to its own
/// answer with fewer names, it gives what it gives for those names on the whole header.
pub fn header_fields<N: AsRef<[u8]>>(header: &[u8], names: &[N], wanted: bool) -> Vec<u8> {
    let mut selected = Vec::new();
    let mut keep = false;
    for line in header.split_inclusive(|&byte| byte == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&byte| byte == b':').next().unwrap_or_default().trim_ascii();
            let named = names.iter().any(|wanted| wanted.as_ref().eq_ignore_ascii_case(name));
            keep = named == wanted;
        }
        if keep {
            selected.extend_from_slice(line);
        }
    }
    selected.extend_from_slice(b"\r\n");
    selected
}

/// The lines of the [`COMMON_FIELDS`] of the message `body`, as the cached items keep them.
pub fn common_header(body: &[u8]) -> Vec<u8> {
    header_fields(body, COMMON_FIELDS, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &[u8] =
        b"From: a@example.org\r\nX-Spam: yes\r\nSubject: long\r\n folded\r\nTo: b@example.org\r\n\r\nTo: body\r\n";

    #[test]
    fn fields_keep_their_continuations_and_end_with_a_blank_line() {
        assert_eq!(header_fields(HEADER, &["subject"], true), b"Subject: long\r\n folded\r\n\r\n");
        assert_eq!(
            header_fields(HEADER, &["subject"], false),
            b"From: a@example.org\r\nX-Spam: yes\r\nTo: b@example.org\r\n\r\n"
        );
    }

    #[test]
    fn the_common_lines_answer_for_any_common_fields() {
        let common = common_header(HEADER);
        assert_eq!(common, b"From: a@example.org\r\nSubject: long\r\n folded\r\nTo: b@example.org\r\n\r\n");
        for names in [&["TO", "subject"][..], &["from"], &["Cc"], &["to", "from", "message-id"]] {
            assert!(all_common(names));
            assert_eq!(header_fields(&common, names, true), header_fields(HEADER, names, true), "{names:?}");
        }
        assert!(!all_common(&["Subject", "X-Spam"]));
    }
}
