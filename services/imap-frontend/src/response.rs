//! Status responses (RFC 9051 §7.1) written as text: `tag OK [CODE] text`, and the untagged
//! `*` forms. Response codes are those of RFC 9051 §7.1 and RFC 5530.

use imap_codec::imap_types::core::Tag;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::Bye => "BYE",
        }
    }
}

/// One status response line; untagged when `tag` is `None`. `code` goes in brackets as given
/// (e.g. `AUTHENTICATIONFAILED` or `CAPABILITY IMAP4rev2 …`); `text` must be one line.
pub fn status(tag: Option<&Tag<'_>>, status: Status, code: Option<&str>, text: &str) -> String {
    let tag = tag.map_or("*", Tag::inner);
    let status = status.as_str();
    match code {
        Some(code) => format!("{tag} {status} [{code}] {text}\r\n"),
        None => format!("{tag} {status} {text}\r\n"),
    }
}

pub use kubemail_message::string;

/// Numbers as an IMAP sequence set in the order given, ascending runs joined (`1:3,7,9:10`);
/// COPYUID pairs its two sets by position, so the order is kept.
pub fn sequence_set(numbers: &[u32]) -> String {
    let mut set = String::new();
    let mut index = 0;
    while index < numbers.len() {
        let start = index;
        while index + 1 < numbers.len() && numbers[index + 1] == numbers[index] + 1 {
            index += 1;
        }
        if !set.is_empty() {
            set.push(',');
        }
        match index > start {
            true => set.push_str(&format!("{}:{}", numbers[start], numbers[index])),
            false => set.push_str(&numbers[start].to_string()),
        }
        index += 1;
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_keep_order_and_join_runs() {
        assert_eq!(sequence_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(sequence_set(&[5, 4]), "5,4");
        assert_eq!(sequence_set(&[]), "");
    }

    #[test]
    fn status_lines_are_tagged_or_untagged_with_optional_codes() {
        let tag = Tag::try_from("a1").unwrap();
        assert_eq!(status(Some(&tag), Status::Ok, None, "Done"), "a1 OK Done\r\n");
        assert_eq!(status(None, Status::No, Some("ALERT"), "Careful"), "* NO [ALERT] Careful\r\n");
    }

    #[test]
    fn strings_are_quoted_with_escapes_or_sent_as_literals() {
        assert_eq!(string(r#"say "hi" \o/"#, false), r#""say \"hi\" \\o/""#);
        assert_eq!(string("two\r\nlines", false), "{10}\r\ntwo\r\nlines");
        assert_eq!(string("Grüße", false), "{7}\r\nGrüße");
        assert_eq!(string("Grüße", true), "\"Grüße\"");
    }
}
