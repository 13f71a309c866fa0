//! Mailbox names between the wire and the mailstore. The mailstore keeps UTF-8 names with `/`
//! as the hierarchy separator; on the wire an IMAP4rev1 client uses modified UTF-7 (RFC 3501
//! §5.1.3) and a client that enabled UTF8=ACCEPT (RFC 6855) or IMAP4rev2 uses UTF-8.

use base64::Engine as _;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// The hierarchy separator.
pub const SEPARATOR: char = '/';

/// Modified BASE64: `,` for `/`, no padding (and none accepted).
const MODIFIED_BASE64: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The UTF-8 name a client sent, or why it is not a name.
pub fn from_wire(wire: &[u8], utf8: bool) -> Result<String, &'static str> {
    if utf8 {
        return String::from_utf8(wire.to_vec()).map_err(|_| "Mailbox name is not UTF-8");
    }
    decode_modified_utf7(wire).ok_or("Mailbox name is not valid modified UTF-7 (RFC 3501 §5.1.3)")
}

/// The name as the client expects it.
pub fn to_wire(name: &str, utf8: bool) -> String {
    if utf8 { name.to_string() } else { encode_modified_utf7(name) }
}

fn encode_modified_utf7(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, encoded: &mut String| {
        if !pending.is_empty() {
            let octets: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
            encoded.push('&');
            encoded.push_str(&MODIFIED_BASE64.encode(octets));
            encoded.push('-');
            pending.clear();
        }
    };
    for character in name.chars() {
        if (' '..='~').contains(&character) {
            flush(&mut pending, &mut encoded);
            match character {
                '&' => encoded.push_str("&-"),
                other => encoded.push(other),
            }
        } else {
            pending.extend(character.encode_utf16(&mut [0; 2]).iter());
        }
    }
    flush(&mut pending, &mut encoded);
    encoded
}

fn decode_modified_utf7(wire: &[u8]) -> Option<String> {
    let mut decoded = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'&' => {
                let end = tail.iter().position(|&byte| byte == b'-')?;
                let (shifted, after) = (&tail[..end], &tail[end + 1..]);
                if shifted.is_empty() {
                    decoded.push('&');
                } else {
                    let octets = MODIFIED_BASE64.decode(shifted).ok()?;
                    if octets.len() % 2 != 0 {
                        return None;
                    }
                    let units = octets.chunks_exact(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
                    let text: String = char::decode_utf16(units).collect::<Result<_, _>>().ok()?;
                    // Printable ASCII must not be encoded (RFC 3501 §5.1.3): one spelling per name.
                    if text.chars().any(|c| (' '..='~').contains(&c)) {
                        return None;
                    }
                    decoded.push_str(&text);
                }
                rest = after;
            }
            0x20..=0x7e => {
                decoded.push(first as char);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_utf7_round_trips_the_rfc_example_and_ampersands() {
        let name = "~peter/mail/台北/日本語";
        assert_eq!(to_wire(name, false), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(from_wire(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-", false).unwrap(), name);
        assert_eq!(to_wire("Tom & Jerry", false), "Tom &- Jerry");
        assert_eq!(from_wire(b"Tom &- Jerry", false).unwrap(), "Tom & Jerry");
        assert_eq!(to_wire("Entwürfe", false), "Entw&APw-rfe");
        assert_eq!(from_wire(b"Entw&APw-rfe", false).unwrap(), "Entwürfe");
    }

    #[test]
    fn malformed_modified_utf7_is_refused() {
        for wire in [&b"&Jjo"[..], b"&A-", b"&AGE-", b"caf\xc3\xa9", b"&U,BTF2XlZyyKng==-"] {
            assert!(from_wire(wire, false).is_err(), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn utf8_clients_send_and_get_utf8() {
        assert_eq!(to_wire("Entwürfe", true), "Entwürfe");
        assert_eq!(from_wire("Entwürfe".as_bytes(), true).unwrap(), "Entwürfe");
        assert!(from_wire(b"\xff", true).is_err());
    }
}
