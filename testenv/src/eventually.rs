//! Waiting on a condition with a deadline: the one way tests wait, never a fixed sleep.

use std::time::Duration;

/// How often [`eventually`] checks its condition.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `check` returns true, checking every 20 ms, and panics naming `what` once
/// `deadline` has passed. Runs on tokio's clock, so under a paused clock it costs no real time.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if let Err(waited) = try_eventually(deadline, &mut check).await {
        panic!("timed out after {waited:?} waiting for {what}");
    }
}

/// As [`eventually`], but returns `Err(deadline)` instead of panicking.
pub async fn try_eventually<F, Fut>(deadline: Duration, mut check: F) -> Result<(), Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= end {
            return Err(deadline);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_condition_that_becomes_true_ends_the_wait_and_one_that_never_does_times_out() {
        let mut calls = 0;
        try_eventually(Duration::from_secs(1), || {
            calls += 1;
            let done = calls == 3;
            async move { done }
        })
        .await
        .expect("true on the third check");
        assert_eq!(calls, 3);
        let started = tokio::time::Instant::now();
        let waited = try_eventually(Duration::from_secs(5), || async { false }).await;
        assert_eq!(waited, Err(Duration::from_secs(5)));
        assert!(started.elapsed() >= Duration::from_secs(5));
    }
}
