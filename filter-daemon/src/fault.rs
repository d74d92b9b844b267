//! Faults a test can ask of a debug build, to prove that the watchdog notices a hung daemon:
//! `SNI_FILTER_FAULT=hang-main-loop@MS` or `hang-quic-worker@MS` hangs that part MS
//! milliseconds after the daemon started. Release builds ignore the variable.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

/// A part of the daemon that can be made to hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    MainLoop,
    QuicWorker,
}

/// The fault asked for, and when it is due.
fn asked() -> Option<(Hang, Instant)> {
    static ASKED: OnceLock<Option<(Hang, Instant)>> = OnceLock::new();
    *ASKED.get_or_init(|| {
        if !cfg!(debug_assertions) {
            return None;
        }
        let text = std::env::var("SNI_FILTER_FAULT").ok()?;
        let (what, ms) = text.split_once('@')?;
        let hang = match what {
            "hang-main-loop" => Hang::MainLoop,
            "hang-quic-worker" => Hang::QuicWorker,
            _ => return None,
        };
        Some((
            hang,
            Instant::now() + Duration::from_millis(ms.parse().ok()?),
        ))
    })
}

/// Reads the variable now, so that the delay counts from the daemon's start.
pub fn arm() {
    let _ = asked();
}

/// Whether `part` should hang now.
pub fn due(part: Hang) -> bool {
    asked().is_some_and(|(hang, at)| hang == part && Instant::now() >= at)
}
