//! When to try again: an exponential schedule measured from acceptance, up to a maximum age.
//!
//! The next attempt is the first point of the schedule (1m, then 5m after that, then 15m, 1h,
//! and 4h for ever after, by default) that lies in the future, counted from the time the
//! message was accepted. Counting from acceptance rather than from attempts makes the schedule
//! immune to redeliveries that were not attempts (an expired lease, a worker restart).

use std::time::Duration;

/// The retry schedule and the age at which a message is given up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule {
    /// Gaps between attempts; the last one repeats.
    pub steps: Vec<Duration>,
    pub max_age: Duration,
}

/// What to do with recipients that failed temporarily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this Unix time (seconds).
    At(i64),
    /// The message is too old: the temporary failures are final.
    GiveUp,
}

impl RetrySchedule {
    /// The next attempt for a message accepted at `received_at`, now being `now` (Unix
    /// seconds). The last attempt falls on the maximum age itself.
    pub fn next(&self, received_at: i64, now: i64) -> Next {
        let expires = received_at.saturating_add(seconds(self.max_age));
        if now >= expires {
            return Next::GiveUp;
        }
        let mut at = received_at;
        let mut steps = self.steps.iter().map(|step| seconds(*step).max(1));
        let mut step = steps.next().unwrap_or(1);
        while at <= now {
            at = at.saturating_add(step);
            step = steps.next().unwrap_or(step);
        }
        Next::At(at.min(expires))
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60;

    fn default_schedule() -> RetrySchedule {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        RetrySchedule {
            steps: vec![minutes(1), minutes(5), minutes(15), minutes(60), minutes(240)],
            max_age: Duration::from_secs(5 * 86_400),
        }
    }

    #[test]
    fn attempts_follow_the_steps_from_acceptance() {
        let schedule = default_schedule();
        let t0 = 1_800_000_000;
        assert_eq!(schedule.next(t0, t0), Next::At(t0 + MINUTE));
        assert_eq!(schedule.next(t0, t0 + MINUTE), Next::At(t0 + 6 * MINUTE));
        assert_eq!(schedule.next(t0, t0 + 6 * MINUTE), Next::At(t0 + 21 * MINUTE));
        assert_eq!(schedule.next(t0, t0 + 21 * MINUTE), Next::At(t0 + 81 * MINUTE));
        assert_eq!(schedule.next(t0, t0 + 81 * MINUTE), Next::At(t0 + 321 * MINUTE));
        assert_eq!(schedule.next(t0, t0 + 321 * MINUTE), Next::At(t0 + 561 * MINUTE), "4h repeats");
        // A late attempt (a backlog, a restart) lands on the schedule, not a step after it.
        assert_eq!(schedule.next(t0, t0 + 30 * MINUTE), Next::At(t0 + 81 * MINUTE));
    }

    #[test]
    fn the_last_attempt_is_at_the_maximum_age_then_it_gives_up() {
        let schedule = default_schedule();
        let t0 = 1_800_000_000;
        let expires = t0 + 5 * 86_400;
        assert_eq!(schedule.next(t0, expires - 1), Next::At(expires));
        assert_eq!(schedule.next(t0, expires), Next::GiveUp);
        assert_eq!(schedule.next(t0, expires + 3600), Next::GiveUp);
    }
}
