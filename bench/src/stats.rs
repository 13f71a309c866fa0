//! Percentiles and medians of measured values.

use std::time::Duration;

/// Latencies in milliseconds, sorted once so percentiles are cheap to read.
pub struct Latencies {
    sorted_ms: Vec<f64>,
}

impl Latencies {
    pub fn new(samples: impl IntoIterator<Item = Duration>) -> Self {
        let mut sorted_ms: Vec<f64> = samples.into_iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        sorted_ms.sort_by(f64::total_cmp);
        Latencies { sorted_ms }
    }

    /// The `p`-th percentile (0–100), interpolated between the two nearest samples; 0 when
    /// there are none.
    pub fn percentile(&self, p: f64) -> f64 {
        percentile_of_sorted(&self.sorted_ms, p)
    }

    pub fn mean(&self) -> f64 {
        if self.sorted_ms.is_empty() { 0.0 } else { self.sorted_ms.iter().sum::<f64>() / self.sorted_ms.len() as f64 }
    }
}

/// The median of `values` (any order); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_of_sorted(&sorted, 50.0)
}

fn percentile_of_sorted(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let rank = (n - 1) as f64 * p.clamp(0.0, 100.0) / 100.0;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        }
    }
}

/// Rounds to three decimals for readable JSON.
pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_and_median_takes_the_middle() {
        let latencies = Latencies::new((1..=5).map(Duration::from_millis));
        assert_eq!(latencies.percentile(50.0), 3.0);
        assert_eq!(latencies.percentile(100.0), 5.0);
        assert!((latencies.percentile(90.0) - 4.6).abs() < 1e-9);
        assert_eq!(median(&[9.0, 1.0, 5.0]), 5.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert_eq!(median(&[]), 0.0);
    }
}
