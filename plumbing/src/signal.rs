//! Shutdown is an argument: SIGTERM (Kubernetes) and SIGINT (Ctrl-C) cancel one token that
//! every loop and server of the process watches.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. The handlers are installed before this
/// returns, so a signal arriving right after start-up is not lost; an error means they could
/// not be installed (the process should not run without them). Needs a Tokio runtime.
pub fn cancel_on_signals() -> std::io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
            () = cancel.cancelled() => return,
        }
        cancel.cancel();
    });
    Ok(token)
}
