//! The termination signal: what `serve` and `discover` wait on in production (tests pass their
//! own shutdown future instead).

/// Resolves on SIGINT or SIGTERM (Kubernetes sends SIGTERM on pod deletion). A signal that
/// cannot be listened for is logged and never fires, so the other one still works.
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use super::termination_signal;

    /// SIGTERM (what Kubernetes sends) resolves the future. The handler is installed on the
    /// first poll, so the signal is sent only after it: the test process is never killed.
    #[tokio::test]
    async fn sigterm_resolves_the_termination_signal() {
        let mut signal = Box::pin(termination_signal());
        let first = std::future::poll_fn(|cx| Poll::Ready(signal.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "resolved before any signal");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(60), signal)
            .await
            .expect("SIGTERM resolved the termination signal");
    }
}
