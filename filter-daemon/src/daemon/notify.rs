//! Telling the service manager how the daemon is (`sd_notify`, for `Type=notify`):
//! `READY=1` once the filter is attached, `RELOADING=1` while a reload runs, `STOPPING=1`,
//! and `WATCHDOG=1` while the main loop turns and the QUIC worker beats. Without
//! `$NOTIFY_SOCKET` (not started by systemd) every message is skipped.

use std::time::Duration;

use sd_notify::NotifyState;

/// The service manager, if one listens.
pub(super) struct ServiceManager {
    watchdog: Option<Duration>,
    /// The first failure to send is logged; the next ones would say the same.
    failed: bool,
}

impl ServiceManager {
    pub(super) fn from_env() -> Self {
        Self {
            watchdog: sd_notify::watchdog_enabled(),
            failed: false,
        }
    }

    /// How often the watchdog wants to hear from the daemon: half its timeout, as
    /// `sd_watchdog_enabled(3)` advises. `None` when no watchdog is set.
    pub(super) fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
            .map(|t| (t / 2).max(Duration::from_millis(10)))
    }

    /// The watchdog's timeout, if set.
    pub(super) fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Started (or reloaded) and serving; `status` is what `systemctl status` shows.
    pub(super) fn ready(&mut self, status: &str) -> Option<String> {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)])
    }

    /// A reload starts; `READY=1` follows when it ends, applied or refused.
    pub(super) fn reloading(&mut self) -> Option<String> {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading the configuration"),
            ]),
            Err(e) => Some(format!("reading the monotonic clock: {e}")),
        }
    }

    pub(super) fn stopping(&mut self) -> Option<String> {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")])
    }

    /// The daemon is alive: its main loop turns and its QUIC worker beats.
    pub(super) fn alive(&mut self) -> Option<String> {
        self.send(&[NotifyState::Watchdog])
    }

    /// Sends `states`; returns the first failure's text, to be logged once.
    fn send(&mut self, states: &[NotifyState]) -> Option<String> {
        let e = sd_notify::notify(states).err().filter(|_| !self.failed)?;
        self.failed = true;
        Some(format!(
            "telling the service manager ($NOTIFY_SOCKET) failed: {e}; it may stop the daemon as hung"
        ))
    }
}
