//! Byte sizes written as Kubernetes quantities (`5Gi`, `500M`, `1e6`), read and written.

/// Binary suffixes first: `Mi` must not be read as `M` followed by garbage.
const SUFFIXES: [(&str, u64); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// The bytes a quantity stands for; `None` unless it is a whole, non-negative number of bytes
/// that fits in 64 bits (`1.5Gi` is fine, `0.5` and `-1Mi` are not).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, multiplier) = if let Some((mantissa, exponent)) = text.split_once(['e', 'E']) {
        let exponent: u32 = exponent.strip_prefix('+').unwrap_or(exponent).parse().ok()?;
        (mantissa, 10u64.checked_pow(exponent)?)
    } else {
        SUFFIXES
            .iter()
            .find_map(|(suffix, multiplier)| text.strip_suffix(suffix).map(|number| (number, *multiplier)))
            .unwrap_or((text, 1))
    };
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
        || fraction.len() > 18
    {
        return None;
    }
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let fraction_value: u128 = if fraction.is_empty() { 0 } else { fraction.parse().ok()? };
    let scale = 10u128.pow(fraction.len() as u32);
    let total = whole.checked_mul(scale)?.checked_add(fraction_value)?.checked_mul(u128::from(multiplier))?;
    (total % scale == 0).then(|| u64::try_from(total / scale).ok()).flatten()
}

/// `bytes` in the largest binary unit that shows it with at most one decimal (`1.5Gi`, `12Mi`,
/// `900`), as `kubectl get` shows it.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let Some(unit) = (0..UNITS.len()).rev().find(|&i| bytes >= 1u64 << (10 * (i + 1))) else {
        return bytes.to_string();
    };
    let tenths = (u128::from(bytes) * 10 + (1u128 << (10 * (unit + 1))) / 2) >> (10 * (unit + 1));
    if tenths.is_multiple_of(10) {
        format!("{}{}", tenths / 10, UNITS[unit])
    } else {
        format!("{}.{}{}", tenths / 10, tenths % 10, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_read_as_kubernetes_reads_them() {
        assert_eq!(parse_bytes("5Gi"), Some(5 << 30));
        assert_eq!(parse_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_bytes("128974848"), Some(128_974_848));
        assert_eq!(parse_bytes("1e3"), Some(1_000));
        assert_eq!(parse_bytes("2k"), Some(2_000));
        assert_eq!(parse_bytes("+1Ki"), Some(1_024));
    }

    #[test]
    fn what_is_not_a_whole_byte_count_is_refused() {
        for text in ["", "Gi", "-1Mi", "0.5", "1.1", "5GB", "five", "1..2Gi", "16Ei", "1e30"] {
            assert_eq!(parse_bytes(text), None, "{text:?}");
        }
    }

    #[test]
    fn sizes_are_shown_in_the_largest_unit() {
        assert_eq!(format_bytes(0), "0");
        assert_eq!(format_bytes(900), "900");
        assert_eq!(format_bytes(1_024), "1Ki");
        assert_eq!(format_bytes(12 << 20), "12Mi");
        assert_eq!(format_bytes(3 << 29), "1.5Gi");
        assert_eq!(format_bytes(5 << 30), "5Gi");
    }
}
