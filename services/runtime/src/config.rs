//! Parsers for configuration values given as flags or environment variables: byte sizes
//! (`500MB`, `1GiB`, `10k`) and durations (`250ms`, `30s`, `1h30m`, `5d`).
//!
//! Both have the shape clap wants for a `value_parser`, and their error text is written to read
//! well after clap's `invalid value '…' for '--flag <X>': `:
//!
//! ```
//! # use std::time::Duration;
//! use kubemail_runtime::config::{parse_byte_size, parse_duration};
//!
//! #[derive(clap::Parser)]
//! struct Limits {
//!     #[arg(long, env = "KUBEMAIL_MAX_MESSAGE_SIZE", default_value = "25MiB", value_parser = parse_byte_size)]
//!     max_message_size: u64,
//!     #[arg(long, env = "KUBEMAIL_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
//!     idle_timeout: Duration,
//! }
//! ```

use std::time::Duration;

/// Size units, matched case-insensitively. Decimal units are powers of 1000 and binary ones
/// powers of 1024, as in Kubernetes quantities (`k`, `M`, `G` vs `Ki`, `Mi`, `Gi`).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", KB),
    ("kb", KB),
    ("m", KB * KB),
    ("mb", KB * KB),
    ("g", KB * KB * KB),
    ("gb", KB * KB * KB),
    ("t", KB * KB * KB * KB),
    ("tb", KB * KB * KB * KB),
    ("ki", KIB),
    ("kib", KIB),
    ("mi", KIB * KIB),
    ("mib", KIB * KIB),
    ("gi", KIB * KIB * KIB),
    ("gib", KIB * KIB * KIB),
    ("ti", KIB * KIB * KIB * KIB),
    ("tib", KIB * KIB * KIB * KIB),
];
const KB: u64 = 1000;
const KIB: u64 = 1024;
const SIZE_UNITS_HELP: &str = "B, kB, MB, GB, TB, KiB, MiB, GiB or TiB";

/// Duration units in nanoseconds. Case-sensitive, like Go's `time.ParseDuration`, which
/// Kubernetes users know; `d` is added because retention and retry limits are counted in days.
const DURATION_UNITS: &[(&str, u64)] = &[
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];
const DURATION_UNITS_HELP: &str = "ms, s, m, h or d";

/// Parses a byte size: a number with an optional unit (`4096`, `10k`, `500MB`, `1.5GiB`).
///
/// `k`/`kB`, `M`/`MB`, `G`/`GB`, `T`/`TB` are decimal (powers of 1000); `Ki`/`KiB`, `Mi`/`MiB`,
/// `Gi`/`GiB`, `Ti`/`TiB` are binary (powers of 1024). Units ignore case; a space may separate
/// number and unit. Fractions are allowed when they come to a whole number of bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty size; expected a number with an optional unit, e.g. 500MB or 1GiB".into());
    }
    let not_a_number = || format!("expected a number with an optional unit ({SIZE_UNITS_HELP}), e.g. 500MB or 1GiB");
    let too_large = || format!("larger than the maximum of {} bytes", u64::MAX);
    let (number, unit) = split_number(text);
    if number.is_empty() {
        return Err(not_a_number());
    }
    let unit = unit.trim_start();
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
        .map(|&(_, multiplier)| multiplier)
        .ok_or_else(|| format!("unknown size unit \"{unit}\" (expected {SIZE_UNITS_HELP})"))?;
    let bytes = scale(number, multiplier).map_err(|error| match error {
        ScaleError::NotANumber => not_a_number(),
        ScaleError::Fractional => "not a whole number of bytes".into(),
        ScaleError::TooLarge => too_large(),
    })?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Parses a duration: one or more numbers each followed by a unit (`250ms`, `30s`, `5m`, `4h`,
/// `5d`, `1h30m`, `1.5h`). Units are `ms`, `s`, `m`, `h` and `d`; a bare `0` is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; expected a number and a unit, e.g. 30s or 5m".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    // `Duration::from_nanos` takes a u64: about 584 years.
    let too_long = || "longer than the maximum of about 584 years".to_owned();
    let mut rest = text;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let (number, after_number) = split_number(rest);
        let after_number = after_number.trim_start();
        let unit_len = after_number.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if number.is_empty() {
            return Err(format!(
                "expected a number before \"{rest}\", e.g. 30s or 1h30m (units: {DURATION_UNITS_HELP})"
            ));
        }
        if unit.is_empty() {
            return Err(format!("missing unit after \"{number}\" (expected {DURATION_UNITS_HELP}), e.g. {number}s"));
        }
        let unit_nanos = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, nanos)| nanos)
            .ok_or_else(|| format!("unknown duration unit \"{unit}\" (expected {DURATION_UNITS_HELP})"))?;
        let part = scale(number, unit_nanos).map_err(|error| match error {
            ScaleError::NotANumber => format!("\"{number}\" is not a number"),
            ScaleError::Fractional => "finer than one nanosecond".into(),
            ScaleError::TooLarge => too_long(),
        })?;
        nanos = nanos.checked_add(part).ok_or_else(too_long)?;
        rest = after_unit.trim_start();
    }
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| too_long())
}

/// Splits `text` after its leading digits and dots.
/// A group of flags as the binary has it when none of them is given: each flag's default, or
/// its environment variable when that is set. For code that builds a service without a
/// command line (tests, fuzzers) and wants its defaults from the one place they are written.
pub fn flag_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"));
    let matches = command.try_get_matches_from(["defaults"]).unwrap_or_else(|e| panic!("the flags' defaults: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("the flags' defaults: {e}"))
}

fn split_number(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    text.split_at(end)
}

#[derive(Debug, PartialEq, Eq)]
enum ScaleError {
    NotANumber,
    /// The product has a fractional part (`0.5B`).
    Fractional,
    TooLarge,
}

/// `number` (decimal digits with at most one `.`) times `multiplier`, computed exactly.
fn scale(number: &str, multiplier: u64) -> Result<u128, ScaleError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return Err(ScaleError::NotANumber);
    }
    let fraction = fraction.trim_end_matches('0');
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or(ScaleError::TooLarge)?;
    }
    let product = mantissa.checked_mul(u128::from(multiplier)).ok_or(ScaleError::TooLarge)?;
    // A fraction too long for the denominator cannot divide out for any of our multipliers.
    let denominator =
        u32::try_from(fraction.len()).ok().and_then(|len| 10u128.checked_pow(len)).ok_or(ScaleError::Fractional)?;
    if product % denominator != 0 {
        return Err(ScaleError::Fractional);
    }
    Ok(product / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("10B", 10),
            ("10k", 10_000),
            ("10kB", 10_000),
            ("500MB", 500_000_000),
            ("500 mb", 500_000_000),
            ("2G", 2_000_000_000),
            ("1TB", 1_000_000_000_000),
            ("1Ki", 1024),
            ("1KiB", 1024),
            ("25MiB", 25 * 1024 * 1024),
            ("1GiB", 1 << 30),
            ("1gib", 1 << 30),
            ("2TiB", 2 << 40),
            ("1.5GiB", 3 << 29),
            ("0.5k", 500),
            (".5k", 500),
            ("1.000B", 1),
            ("  7 KiB ", 7 * 1024),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_byte_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn bad_byte_sizes_say_what_is_wrong() {
        for (text, error) in [
            ("", "empty size"),
            ("   ", "empty size"),
            ("MB", "expected a number"),
            ("abc", "expected a number"),
            ("-5MB", "expected a number"),
            ("1.2.3k", "expected a number"),
            (".k", "expected a number"),
            ("10 parsecs", "unknown size unit \"parsecs\" (expected B, kB"),
            ("10MBs", "unknown size unit \"MBs\""),
            ("5 MB extra", "unknown size unit \"MB extra\""),
            ("0.5B", "not a whole number of bytes"),
            ("1.0001k", "not a whole number of bytes"),
            ("18446744073709551616", "larger than the maximum"),
            ("17000000TiB", "larger than the maximum"),
            ("99999999999999999999999999999999999999999", "larger than the maximum"),
        ] {
            let got = parse_byte_size(text).expect_err(text);
            assert!(got.contains(error), "{text:?}: {got:?} lacks {error:?}");
        }
    }

    #[test]
    fn durations() {
        for (text, duration) in [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_mins(5)),
            ("1h", Duration::from_hours(1)),
            ("4h", Duration::from_hours(4)),
            ("5d", Duration::from_hours(5 * 24)),
            ("1h30m", Duration::from_mins(90)),
            ("1h 30m 15s", Duration::from_secs(5415)),
            ("1.5h", Duration::from_mins(90)),
            ("0.001ms", Duration::from_nanos(1000)),
            (" 10 s ", Duration::from_secs(10)),
        ] {
            assert_eq!(parse_duration(text), Ok(duration), "{text:?}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        for (text, error) in [
            ("", "empty duration"),
            ("30", "missing unit after \"30\""),
            ("1h30", "missing unit after \"30\""),
            ("s", "expected a number before \"s\""),
            ("-5s", "expected a number before \"-5s\""),
            ("5x", "unknown duration unit \"x\" (expected ms, s, m, h or d)"),
            ("5S", "unknown duration unit \"S\""),
            ("5 minutes", "unknown duration unit \"minutes\""),
            ("1..5s", "\"1..5\" is not a number"),
            ("0.0000001ms", "finer than one nanosecond"),
            ("300000d", "longer than the maximum"),
            ("200000d 200000d", "longer than the maximum"),
        ] {
            let got = parse_duration(text).expect_err(text);
            assert!(got.contains(error), "{text:?}: {got:?} lacks {error:?}");
        }
    }

    /// The parsers plug into clap as `value_parser`s, and clap reports their errors.
    #[test]
    fn usable_as_clap_value_parsers() {
        use clap::Parser;

        #[derive(Parser, Debug)]
        struct Flags {
            #[arg(long, default_value = "25MiB", value_parser = parse_byte_size)]
            max_size: u64,
            #[arg(long, default_value = "30s", value_parser = parse_duration)]
            timeout: Duration,
        }

        let flags = Flags::try_parse_from(["test", "--timeout", "5m"]).unwrap();
        assert_eq!(flags.max_size, 25 * 1024 * 1024);
        assert_eq!(flags.timeout, Duration::from_mins(5));

        let error = Flags::try_parse_from(["test", "--max-size", "10 parsecs"]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("'10 parsecs'"), "{message}");
        assert!(message.contains("unknown size unit \"parsecs\""), "{message}");
    }
}
