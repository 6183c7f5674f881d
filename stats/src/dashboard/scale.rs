//! The charts' share scales: round, and holding the largest share.

/// The smallest of a few round shares at or above `max` (at least 10%).
pub(super) fn nice_ceiling(max: f64) -> f64 {
    [0.1, 0.2, 0.25, 0.4, 0.5, 0.6, 0.8, 1.0]
        .into_iter()
        .find(|v| max <= *v + 1e-9)
        .unwrap_or(1.0)
}

/// Where a scale is marked: 0, its half, its end.
pub(super) fn ticks(scale: f64) -> [f64; 3] {
    [0.0, scale / 2.0, scale]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round_and_hold_the_largest_share() {
        assert_eq!(nice_ceiling(0.0), 0.1);
        assert_eq!(nice_ceiling(0.21), 0.25);
        assert_eq!(nice_ceiling(0.5), 0.5);
        assert_eq!(nice_ceiling(0.97), 1.0);
    }
}
