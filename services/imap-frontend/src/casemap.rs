//! The i;unicode-casemap comparator (RFC 5051), which I18NLEVEL=1 (RFC 5255) has SEARCH and
//! SORT use: each character in title case (upper case here, the same but for a few digraphs),
//! then compatibility-decomposed (NFKD), so `É`, `é` and `e` followed by a combining acute
//! accent all compare equal, and strings order by the octets of what they map to.

use unicode_normalization::UnicodeNormalization;

/// `text` mapped for comparison.
pub fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_uppercase).nfkd().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_and_composition_do_not_matter() {
        assert_eq!(fold("Grüße"), fold("GRU\u{308}SSE"));
        assert_eq!(fold("é"), fold("E\u{301}"));
        assert_eq!(fold("ﬁle"), fold("FILE"), "compatibility forms decompose");
        // Ordered as their title case: `_` (0x5F) sorts after letters (0x41–0x5A).
        assert!(fold("apple") < fold("_apple"));
    }
}
