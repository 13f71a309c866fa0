//! UID sets: the ranges a request names, checked, and applied to rows read over their span.

use kubemail_proto::mailstore::UidRange;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::validate;
use crate::{Error, Result};

/// A validated UID set.
pub(super) struct UidSet {
    ranges: Vec<(i64, i64)>,
}

impl UidSet {
    pub fn new(ranges: &[UidRange]) -> Result<Self> {
        if ranges.is_empty() {
            return Ok(UidSet::all());
        }
        Ok(UidSet { ranges: validate::uid_ranges(ranges)? })
    }

    /// A set that must name its messages: for changes, an empty list is more likely a
    /// frontend's empty sequence set than a wish to touch every message.
    pub fn required(ranges: &[UidRange]) -> Result<Self> {
        if ranges.is_empty() {
            return Err(Error::invalid("no UIDs given (send 1:* for every message)"));
        }
        UidSet::new(ranges)
    }

    pub fn all() -> Self {
        UidSet { ranges: vec![(1, i64::from(u32::MAX))] }
    }

    /// The set of exactly `uids`.
    pub(super) fn of(uids: &[u32]) -> Self {
        let ranges = contiguous_runs(uids).into_iter().map(|(first, last)| (i64::from(first), i64::from(last)));
        UidSet { ranges: ranges.collect() }
    }

    pub(super) fn span(&self) -> (i64, i64) {
        let low = self.ranges.iter().map(|r| r.0).min().unwrap_or(1);
        let high = self.ranges.iter().map(|r| r.1).max().unwrap_or(0);
        (low, high)
    }

    /// Whether the set names exactly `uids` (ascending, each once).
    pub(super) fn is_exactly(&self, uids: &[u32]) -> bool {
        let mut ranges = self.ranges.clone();
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (first, last) in ranges {
            match merged.last_mut() {
                Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
                _ => merged.push((first, last)),
            }
        }
        let runs = contiguous_runs(uids).into_iter().map(|(first, last)| (i64::from(first), i64::from(last)));
        merged.into_iter().eq(runs)
    }

    pub(super) fn contains(&self, uid: i64) -> bool {
        self.ranges.iter().any(|(first, last)| (*first..=*last).contains(&uid))
    }

    /// The rows (read over the set's span) whose `uid` is in the set.
    pub(super) fn keep(&self, rows: Vec<AnyRow>) -> Result<Vec<AnyRow>> {
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            if self.contains(row.try_get("uid")?) {
                kept.push(row);
            }
        }
        Ok(kept)
    }
}

/// Sorted UIDs grouped into inclusive runs of consecutive values.
pub(super) fn contiguous_runs(uids: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == uid => run.1 = uid,
            _ => runs.push((uid, uid)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_exactly_the_uids_its_ranges_cover() {
        let set = UidSet { ranges: vec![(5, 6), (1, 3), (3, 4)] };
        assert!(set.is_exactly(&[1, 2, 3, 4, 5, 6]));
        assert!(!set.is_exactly(&[1, 2, 3, 4, 6]), "a UID of the set left out");
        assert!(!set.is_exactly(&[1, 2, 3, 4, 5, 6, 7]), "a UID outside the set");
        assert!(UidSet::of(&[2, 9]).is_exactly(&[2, 9]));
        assert!(!UidSet::all().is_exactly(&[1, 2]), "1:* is not the messages a session holds");
    }

    #[test]
    fn runs_group_consecutive_uids() {
        assert_eq!(contiguous_runs(&[5, 1, 2, 3, 9, 10]), vec![(1, 3), (5, 5), (9, 10)]);
        assert!(contiguous_runs(&[]).is_empty());
    }
}
