//! The NATS connection, made the same way by the gateway and the ingester.

/// Connects to NATS in the background and returns at once: the client retries the first
/// connection and reconnects forever, so a process starts (and answers its probes) while NATS
/// is away. `urls` is a comma-separated list (`--nats-url`).
///
/// Connection events (connected, disconnected, …) are logged by async-nats itself at info
/// level; no callback logs them again.
pub async fn connect(
    name: &str,
    urls: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connect(split(urls))
        .await
}

/// The servers of a comma-separated list (async-nats parses a single `&str` as one URL).
fn split(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_is_split_on_commas_and_trimmed() {
        assert_eq!(
            split("nats://a:4222, nats://b:4222,nats://c:4222"),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
        assert_eq!(split("nats://a:4222"), ["nats://a:4222"]);
        assert_eq!(split("nats://a:4222,"), ["nats://a:4222"]);
    }
}
