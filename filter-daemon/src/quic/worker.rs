//! The daemon's side of QUIC: reads the Initials the program hands on, judges their flows,
//! writes the verdicts the program enforces, and beats the heartbeat the program checks.
//! `replay` drives a [`Judge`] itself; the daemon runs one on a thread of its own, so that a
//! busy syslog or a reload never delays a verdict.

use std::{
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap, Map, MapData, RingBuf};
use filter_common::{
    Action, BlockedFlow, EVENT_MONITOR, Event, EventAction, FlowKey, NO_APP, QUIC_CID_MAX,
    QUIC_CID_SLOT, QUIC_FLOW_ALLOWED, QUIC_HEARTBEAT_STALE_NS, QuicFlow, QuicInitial, Reason,
    name::NAME_BUF, names, quic_cid_slot,
};

use super::{Client, Datagram, Matcher, Outcome, Reassembly, ReassemblyStats, Verdict};
use crate::{
    Error,
    config::{Config, Mode, Uninspectable},
    events,
    fault::{self, Hang},
    filter::{Filter, monotonic_ns},
    shutdown::Shutdown,
};

/// How often the heartbeat is written: well inside the program's staleness bound (3 s).
const BEAT_EVERY: Duration = Duration::from_millis(500);
/// How long the worker waits for the ring before it beats and looks for a stop.
const WAIT: Duration = Duration::from_millis(100);
/// Verdict latencies kept for percentiles.
const LATENCIES_KEPT: usize = 8192;

/// The maps of the QUIC path, opened as handles of their own (by map id), so they can live
/// on another thread than the loaded filter.
pub struct QuicMaps {
    ring: RingBuf<MapData>,
    verdicts: HashMap<MapData, FlowKey, BlockedFlow>,
    flows: HashMap<MapData, FlowKey, QuicFlow>,
    heartbeat: Array<MapData, u64>,
}

/// A map of `filter` as a handle of its own (by map id), usable on any thread.
pub(crate) fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(
    filter: &Filter,
    name: &'static str,
) -> Result<T, Error> {
    let id = filter.map_id(name)?;
    let data = MapData::from_id(id).map_err(|e| Error::map(name, "opening by id", e))?;
    let map = Map::from_map_data(data).map_err(|e| Error::map(name, "opening by id", e))?;
    T::try_from(map).map_err(|e| Error::map(name, "opening by id", e))
}

impl QuicMaps {
    pub fn open(filter: &Filter) -> Result<Self, Error> {
        Ok(Self {
            ring: open(filter, names::QUIC_INITIALS)?,
            verdicts: open(filter, names::VERDICTS)?,
            flows: open(filter, names::QUIC_FLOWS)?,
            heartbeat: open(filter, names::QUIC_HEARTBEAT)?,
        })
    }

    /// Tells the program a daemon judges QUIC as of now; `alive = false` says none does.
    pub fn beat(&mut self, alive: bool) -> Result<(), Error> {
        let now = if alive { monotonic_ns() } else { 0 };
        self.heartbeat
            .set(0, now, 0)
            .map_err(|e| Error::map(names::QUIC_HEARTBEAT, "writing the heartbeat", e))
    }
}

/// Verdict latencies (arrival of the deciding Initial to the verdict in the table) and
/// what the worker did, for the daemon's summaries and the benchmarks.
#[derive(Clone, Debug, Default)]
pub struct QuicStats {
    pub reassembly: ReassemblyStats,
    pub blocked: u64,
    pub allowed: u64,
    /// Verdicts that could not be written (table full or map error).
    pub write_failures: u64,
    latencies_ns: Vec<u64>,
    next: usize,
}

impl QuicStats {
    fn record_latency(&mut self, ns: u64) {
        if self.latencies_ns.len() < LATENCIES_KEPT {
            self.latencies_ns.push(ns);
        } else {
            self.latencies_ns[self.next] = ns;
        }
        self.next = (self.next + 1) % LATENCIES_KEPT;
    }

    /// The `p`-th percentile (0..=100) of the latencies kept, in nanoseconds.
    pub fn latency_percentile(&self, p: u32) -> Option<u64> {
        if self.latencies_ns.is_empty() {
            return None;
        }
        let mut v = self.latencies_ns.clone();
        v.sort_unstable();
        let i = (v.len() - 1) * p.min(100) as usize / 100;
        Some(v[i])
    }
}

/// Judges the Initials of one filter.
pub struct Judge {
    maps: QuicMaps,
    reassembly: Reassembly,
    pub stats: QuicStats,
}

/// One judged flow: its verdict, and the event to log if it is one that gets logged.
pub struct Judged {
    pub flow: FlowKey,
    pub verdict: Verdict,
    pub event: Option<Event>,
}

/// How verdicts turn into events and table entries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    /// `uninspectable = "drop"`: a hello that cannot be read blocks its flow.
    pub uninspectable_drop: bool,
    /// An event for every judged flow (replay only).
    pub trace_all: bool,
    /// `mode = "monitor"`: verdicts are written as ever (the program passes the packets);
    /// events carry `EVENT_MONITOR`.
    pub monitor: bool,
}

impl Policy {
    /// The policy a configuration asks for (events only for blocked or unreadable flows).
    pub fn of(config: &Config) -> Self {
        Self {
            uninspectable_drop: config.uninspectable == Uninspectable::Drop,
            trace_all: false,
            monitor: config.mode == Mode::Monitor,
        }
    }
}

impl Judge {
    pub fn new(filter: &Filter) -> Result<Self, Error> {
        Ok(Self {
            maps: QuicMaps::open(filter)?,
            reassembly: Reassembly::new(),
            stats: QuicStats::default(),
        })
    }

    pub fn beat(&mut self, alive: bool) -> Result<(), Error> {
        self.maps.beat(alive)
    }

    /// The ring's file descriptor, readable when Initials wait.
    fn ring_fd(&self) -> i32 {
        self.maps.ring.as_raw_fd()
    }

    /// Reads every Initial waiting in the ring; returns the flows judged.
    pub fn drain(&mut self, matcher: &Matcher, policy: Policy) -> Vec<Judged> {
        let mut records = Vec::new();
        while let Some(item) = self.maps.ring.next() {
            if item.len() >= size_of::<QuicInitial>() {
                // SAFETY: the program writes whole `QuicInitial` records; read unaligned.
                records
                    .push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<QuicInitial>()) });
            }
        }
        let mut judged = Vec::new();
        for r in &records {
            let len = usize::from(r.len).min(r.data.len());
            let d = Datagram {
                flow: r.flow,
                client: Client {
                    addr: events::addr(&r.flow, true),
                    ifindex: r.ifindex,
                    vlan: r.vlan,
                },
                ts_ns: r.ts_ns,
                data: &r.data[..len],
            };
            if self.same_allowed_connection(r, d.data) {
                continue;
            }
            let outcome = self.reassembly.feed(&d, matcher);
            self.stats.reassembly = self.reassembly.stats;
            if let Outcome::Judged(verdict) = outcome {
                let event = self.enforce(r, &verdict, policy);
                judged.push(Judged {
                    flow: r.flow,
                    verdict,
                    event,
                });
            }
        }
        judged
    }

    /// An Initial of a flow judged allowed whose connection ID the program did not pass: when
    /// it carries another ID than the client's first and opens under the keys of the allowed
    /// connection, it belongs to it (the client now uses the server's connection ID) and the
    /// program learns the ID. Otherwise it is a new connection on the same ports, judged.
    fn same_allowed_connection(&mut self, r: &QuicInitial, data: &[u8]) -> bool {
        let Ok(mut known) = self.maps.flows.get(&r.flow, 0) else {
            return false;
        };
        if known.state != QUIC_FLOW_ALLOWED {
            return false;
        }
        let first = known.cids[0];
        let first = &first[1..=usize::from(first[0]).min(QUIC_CID_MAX)];
        let Some(dcid) = super::header_dcid(data) else {
            return false;
        };
        // Under the client's own first ID the program passes the connection's Initials for a
        // while after the verdict; one that comes later under that ID is a new connection
        // that chose it again, and is judged.
        if dcid == first || !super::opens_with(data, first) {
            return false;
        }
        if let Some(slot) = quic_cid_slot(&dcid) {
            known.cids[1] = slot;
            if self.maps.flows.insert(r.flow, known, 0).is_err() {
                self.stats.write_failures += 1;
            }
        }
        true
    }

    /// Writes the verdict where the program reads it; returns the event it deserves.
    fn enforce(&mut self, r: &QuicInitial, v: &Verdict, policy: Policy) -> Option<Event> {
        let uninspectable = v.reason.uninspectable();
        let block =
            v.reason == Reason::HelloBlocked || (uninspectable && policy.uninspectable_drop);
        let now = monotonic_ns();
        let written = if block {
            self.stats.blocked += 1;
            let entry = BlockedFlow {
                since_ns: now,
                last_ns: now,
                app: v.app,
                // The program answers no QUIC packet with a reset: reject acts as drop.
                action: Action::Drop as u8,
                _pad: [0; 5],
            };
            self.maps.verdicts.insert(r.flow, entry, 0)
        } else {
            self.stats.allowed += 1;
            let slot = |c: &[u8]| quic_cid_slot(c).unwrap_or([0; QUIC_CID_SLOT]);
            let entry = QuicFlow {
                initials: 0,
                state: QUIC_FLOW_ALLOWED,
                cids: [slot(&v.key_dcid), slot(&v.dcid)],
                since_ns: now,
            };
            self.maps.flows.insert(r.flow, entry, 0)
        };
        if written.is_err() {
            self.stats.write_failures += 1;
        }
        self.stats
            .record_latency(monotonic_ns().saturating_sub(r.ts_ns));
        let action = match v.reason {
            Reason::HelloBlocked => EventAction::Drop,
            Reason::HelloMonitored => EventAction::Monitor,
            _ if block => EventAction::Drop,
            _ => EventAction::Pass,
        };
        let logged = block || uninspectable || v.reason == Reason::HelloMonitored;
        if !logged && !policy.trace_all {
            return None;
        }
        let mut e = Event {
            ts_ns: now,
            ifindex: r.ifindex,
            app: if matches!(v.reason, Reason::HelloBlocked | Reason::HelloMonitored) {
                v.app
            } else {
                NO_APP
            },
            action: action as u8,
            reason: v.reason as u8,
            flow: r.flow,
            sni_len: 0,
            flags: if policy.monitor {
                v.flags | EVENT_MONITOR
            } else {
                v.flags
            },
            _pad0: 0,
            vlan: r.vlan,
            _pad1: 0,
            sni: [0; NAME_BUF],
        };
        let n = v.name.len().min(NAME_BUF);
        e.sni[..n].copy_from_slice(&v.name[..n]);
        e.sni_len = n as u16;
        Some(e)
    }
}

/// What the daemon shares with its QUIC worker.
pub struct Shared {
    pub matcher: Mutex<Arc<Matcher>>,
    pub policy: Mutex<Policy>,
    pub stats: Mutex<QuicStats>,
    /// When the heartbeat was last written (`CLOCK_MONOTONIC` ns), for the daemon's watchdog.
    pub beat_at: AtomicU64,
}

impl Shared {
    /// How long ago the worker last wrote the heartbeat the program reads.
    pub fn beat_age(&self) -> Duration {
        let at = self.beat_at.load(Ordering::Relaxed);
        Duration::from_nanos(monotonic_ns().saturating_sub(at))
    }

    /// Whether the program takes the worker to be judging QUIC: its heartbeat is younger
    /// than the program's staleness bound. The watchdog and `/metrics` both ask this.
    pub fn beating(&self) -> bool {
        self.beat_age() < Duration::from_nanos(QUIC_HEARTBEAT_STALE_NS)
    }
}

/// The running worker. Its thread ends when `shutdown` is requested (and its heartbeat is
/// then cleared); dropping the worker requests it and waits for the thread.
pub struct Worker {
    shared: Arc<Shared>,
    shutdown: Shutdown,
    thread: Option<thread::JoinHandle<()>>,
    /// Events of judged flows, for the daemon's log.
    pub events: mpsc::Receiver<Event>,
}

impl Worker {
    /// Starts judging the Initials of `filter` with `matcher` until `shutdown`.
    pub fn start(
        filter: &Filter,
        matcher: Matcher,
        policy: Policy,
        shutdown: Shutdown,
    ) -> Result<Self, Error> {
        let mut judge = Judge::new(filter)?;
        judge.beat(true)?;
        let shared = Arc::new(Shared {
            matcher: Mutex::new(Arc::new(matcher)),
            policy: Mutex::new(policy),
            stats: Mutex::new(QuicStats::default()),
            beat_at: AtomicU64::new(monotonic_ns()),
        });
        let (tx, events) = mpsc::channel();
        let s = shared.clone();
        let stop = shutdown.clone();
        let thread = thread::Builder::new()
            .name("quic".into())
            .spawn(move || run(&mut judge, &s, &stop, &tx))
            .map_err(|e| Error::system("starting the QUIC worker", e))?;
        Ok(Self {
            shared,
            shutdown,
            thread: Some(thread),
            events,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether the worker's thread still runs (it ends only on stop or a map error).
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(judge: &mut Judge, shared: &Shared, shutdown: &Shutdown, tx: &mpsc::Sender<Event>) {
    let mut last_beat = Instant::now();
    while !shutdown.is_requested() {
        if fault::due(Hang::QuicWorker) {
            // A test's fault: no judging, no heartbeat, until stopped.
            thread::sleep(WAIT);
            continue;
        }
        let mut fds = libc::pollfd {
            fd: judge.ring_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; a timeout bounds the wait.
        unsafe { libc::poll(&raw mut fds, 1, WAIT.as_millis() as i32) };
        let matcher = shared.matcher.lock().map(|m| m.clone());
        let policy = shared.policy.lock().map(|p| *p);
        let (Ok(matcher), Ok(policy)) = (matcher, policy) else {
            break;
        };
        for j in judge.drain(&matcher, policy) {
            if let Some(e) = j.event {
                let _ = tx.send(e);
            }
        }
        if let Ok(mut s) = shared.stats.lock() {
            s.clone_from(&judge.stats);
        }
        if last_beat.elapsed() >= BEAT_EVERY {
            // A heartbeat that cannot be written goes stale: the program then drops QUIC
            // Initials, and clients fall back to TCP. Nothing else to do about it here.
            if judge.beat(true).is_ok() {
                shared.beat_at.store(monotonic_ns(), Ordering::Relaxed);
            }
            last_beat = Instant::now();
        }
    }
    // No daemon judges QUIC from now on: the program drops Initials at once.
    let _ = judge.beat(false);
}
