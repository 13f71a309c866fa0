//! Graceful shutdown: a future that completes on SIGTERM or SIGINT, and [`Shutdown`], a cloneable
//! handle that fans one shutdown out to every task of a process.
//!
//! Servers take their shutdown as a future (`run(config, shutdown)`), so tests can stop them
//! without signals. A `main` turns the signals into one [`Shutdown`] and hands each server
//! [`Shutdown::wait`]; `kubemail dev` hands the same handle to all four services.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as unix_signal};
use tokio::sync::watch;

use crate::{Error, Result};

/// Runs `tick` every `interval` (the first at once) until `shutdown` completes; a tick that
/// comes late is not made up for with a burst.
pub async fn every(interval: std::time::Duration, shutdown: impl Future<Output = ()>, mut tick: impl FnMut()) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => tick(),
        }
    }
}

/// Completes when the process receives SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
///
/// Fails only when the signal handlers cannot be installed. Handlers are installed when this is
/// first polled; use [`Shutdown::on_signal`] to install them eagerly at startup.
pub async fn signal() -> Result<()> {
    listen()?.await;
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future for the first of the two.
///
/// Installing eagerly matters: a signal that arrives before its handler exists kills the process
/// with the default action instead of starting a graceful shutdown.
fn listen() -> Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = unix_signal(SignalKind::terminate())?;
    let mut interrupt = unix_signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    })
}

/// A shutdown that any clone can trigger and every clone can wait for.
///
/// Triggering is permanent: waiting after the trigger completes at once, so a task started late
/// still sees it.
#[derive(Clone, Debug)]
pub struct Shutdown {
    triggered: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::trigger`] starts.
    pub fn new() -> Self {
        Shutdown { triggered: watch::Sender::new(false) }
    }

    /// A shutdown that SIGTERM or SIGINT starts (as well as [`Shutdown::trigger`]).
    ///
    /// Installs the signal handlers before returning; must run inside a Tokio runtime.
    pub fn on_signal() -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config("Shutdown::on_signal needs a Tokio runtime".into()));
        }
        let shutdown = Self::new();
        let signalled = listen()?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            signalled.await;
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Starts the shutdown: every pending and future [`Shutdown::wait`] completes.
    pub fn trigger(&self) {
        self.triggered.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.triggered.borrow()
    }

    /// A future that completes once the shutdown has started. It owns what it needs, so it can be
    /// handed to a server or spawned task (`serve(listener, shutdown.wait())`).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        // Keeping a sender inside the future means the channel never closes while someone
        // waits, so the wait ends only on a real trigger.
        let sender = self.triggered.clone();
        let mut receiver = sender.subscribe();
        async move {
            let _ = receiver.wait_for(|&triggered| triggered).await;
            drop(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Long enough for a woken task to run on a loaded 2-core machine.
    const WAKE: Duration = Duration::from_secs(5);
    /// How long a future that must stay pending is given to (wrongly) complete.
    const STAYS_PENDING: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn trigger_reaches_every_waiter() {
        let shutdown = Shutdown::new();
        let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(shutdown.wait())).collect();

        tokio::time::sleep(STAYS_PENDING).await;
        assert!(waiters.iter().all(|w| !w.is_finished()), "a waiter finished before the trigger");
        assert!(!shutdown.is_triggered());

        shutdown.clone().trigger();
        for waiter in waiters {
            tokio::time::timeout(WAKE, waiter).await.expect("waiter not woken").unwrap();
        }
        assert!(shutdown.is_triggered());
    }

    #[tokio::test]
    async fn waiting_after_the_trigger_completes_at_once() {
        let shutdown = Shutdown::new();
        shutdown.trigger();
        tokio::time::timeout(WAKE, shutdown.wait()).await.expect("late waiter not woken");
    }

    #[tokio::test]
    async fn a_wait_outlives_every_handle_and_stays_pending() {
        let wait = Shutdown::new().wait();
        assert!(tokio::time::timeout(STAYS_PENDING, wait).await.is_err());
    }

    #[test]
    fn on_signal_outside_a_runtime_is_an_error() {
        assert!(matches!(Shutdown::on_signal(), Err(Error::Config(_))));
    }

    /// Sends real signals to this test process. Safe because the handlers are installed before
    /// each signal is sent (Tokio never uninstalls them); kept in one test so no other test sees
    /// a signal it did not send.
    #[tokio::test]
    async fn sigterm_and_sigint_start_the_shutdown() {
        async fn send(signal_name: &str) {
            let status = tokio::process::Command::new("kill")
                .args([&format!("-{signal_name}"), &std::process::id().to_string()])
                .status()
                .await
                .unwrap();
            assert!(status.success());
        }

        let shutdown = Shutdown::on_signal().unwrap();
        tokio::time::sleep(STAYS_PENDING).await;
        assert!(!shutdown.is_triggered());
        send("TERM").await;
        tokio::time::timeout(WAKE, shutdown.wait()).await.expect("SIGTERM ignored");

        let mut interrupted = Box::pin(signal());
        // The first poll installs the handlers.
        assert!(futures::poll!(&mut interrupted).is_pending());
        send("INT").await;
        tokio::time::timeout(WAKE, interrupted).await.expect("SIGINT ignored").unwrap();
    }
}
