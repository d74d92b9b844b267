//! The hellos of QUIC flows being reassembled across Initials: bounded in flows, bytes and
//! time, each flow judged once its ClientHello is whole.

use std::collections::{HashMap, VecDeque};

use filter_common::{FlowKey, Reason};

use super::{
    crypto::{CryptoStream, Progress, crypto_frames},
    judge::{Client, Matcher, Verdict, judge_hello},
    keys::{OpenError, Opened, Sender, open_initials},
};

/// Flows whose hello is being reassembled at once; the oldest is dropped for a new one.
pub const FLOWS_MAX: usize = 4096;
/// A reassembly silent this long (nanoseconds) is dropped.
pub const FLOW_IDLE_NS: u64 = 10_000_000_000;

/// A client Initial as the program hands it on.
#[derive(Clone, Debug)]
pub struct Datagram<'a> {
    pub flow: FlowKey,
    pub client: Client,
    /// When it arrived (`CLOCK_MONOTONIC` nanoseconds).
    pub ts_ns: u64,
    pub data: &'a [u8],
}

/// What one datagram led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The flow's hello goes on in later Initials.
    Incomplete,
    /// The flow is judged.
    Judged(Verdict),
    /// Nothing could be read (junk, a packet of another connection, a lost first Initial):
    /// no state was kept.
    Unreadable(OpenError),
}

struct Pending {
    /// The Destination Connection ID of the flow's first Initial: the client's choice,
    /// from which the keys of all its Initials derive (RFC 9001 §5.2).
    dcid: Vec<u8>,
    stream: CryptoStream,
    last_ns: u64,
}

/// Counts of what the reassembly did, for the daemon's records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    pub datagrams: u64,
    pub judged: u64,
    pub unreadable: u64,
    /// Reassemblies dropped for idleness or to make room.
    pub abandoned: u64,
}

/// The hellos of QUIC flows being reassembled: bounded in flows, bytes and time.
#[derive(Default)]
pub struct Reassembly {
    flows: HashMap<FlowKey, Pending>,
    /// Flows in the order they began; entries of flows since finished are skipped.
    order: VecDeque<FlowKey>,
    pub stats: ReassemblyStats,
}

impl Reassembly {
    pub fn new() -> Self {
        Self::default()
    }

    /// Flows being reassembled.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Reads one datagram of a flow; judges the flow once its ClientHello is complete.
    pub fn feed(&mut self, d: &Datagram, matcher: &Matcher) -> Outcome {
        self.stats.datagrams += 1;
        self.expire(d.ts_ns);
        let known: Vec<&[u8]> = self
            .flows
            .get(&d.flow)
            .map(|p| vec![p.dcid.as_slice()])
            .unwrap_or_default();
        let opened = match open_initials(d.data, &known, Sender::Client) {
            Ok(o) => o,
            Err(e) => {
                self.stats.unreadable += 1;
                return Outcome::Unreadable(e);
            }
        };
        // Opened under other keys than the hello being read: another connection on the same
        // ports (a new one, or the same client after a Retry). Its bytes must not fill the
        // earlier connection's stream, nor the earlier bytes decide for it.
        if self
            .flows
            .get(&d.flow)
            .is_some_and(|p| p.dcid != opened[0].key_dcid)
        {
            self.flows.remove(&d.flow);
            self.stats.abandoned += 1;
        }
        let mut frames = Vec::new();
        for o in &opened {
            match crypto_frames(&o.payload) {
                Ok(f) => frames.extend(f.into_iter().map(|(off, b)| (off, b.to_vec()))),
                Err(_) => {
                    return self.finish(
                        d.flow,
                        Verdict::of(Reason::UninspectableMalformed),
                        &opened[0],
                    );
                }
            }
        }
        if frames.is_empty() && !self.flows.contains_key(&d.flow) {
            // An Initial without handshake bytes (an ACK): nothing to keep.
            return Outcome::Incomplete;
        }
        if !self.flows.contains_key(&d.flow) {
            if self.flows.len() >= FLOWS_MAX {
                self.evict_oldest();
            }
            self.order.push_back(d.flow);
        }
        let pending = self.flows.entry(d.flow).or_insert_with(|| Pending {
            dcid: opened[0].key_dcid.clone(),
            stream: CryptoStream::default(),
            last_ns: d.ts_ns,
        });
        pending.last_ns = d.ts_ns;
        for (off, bytes) in &frames {
            if let Err(p) = pending.stream.add(*off, bytes) {
                return self.finish(d.flow, Verdict::of(progress_reason(&p)), &opened[0]);
            }
        }
        match pending.stream.progress() {
            Progress::Incomplete => Outcome::Incomplete,
            Progress::Hello(hello) => {
                let v = judge_hello(&hello, matcher, &d.client);
                self.finish(d.flow, v, &opened[0])
            }
            p => self.finish(d.flow, Verdict::of(progress_reason(&p)), &opened[0]),
        }
    }

    fn finish(&mut self, flow: FlowKey, mut v: Verdict, opened: &Opened) -> Outcome {
        let pending = self.flows.remove(&flow);
        v.key_dcid = pending.map_or_else(|| opened.key_dcid.clone(), |p| p.dcid);
        v.dcid.clone_from(&opened.dcid);
        self.stats.judged += 1;
        Outcome::Judged(v)
    }

    /// Drops reassemblies idle longer than `FLOW_IDLE_NS` as of `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(front) = self.order.front() {
            match self.flows.get(front) {
                None => {
                    self.order.pop_front();
                }
                Some(p) if now_ns.saturating_sub(p.last_ns) > FLOW_IDLE_NS => {
                    let key = *front;
                    self.flows.remove(&key);
                    self.order.pop_front();
                    self.stats.abandoned += 1;
                }
                Some(_) => break,
            }
        }
        // Keys of finished flows pile up behind a live one: compact now and then.
        if self.order.len() > 4 * FLOWS_MAX {
            let flows = &self.flows;
            self.order.retain(|k| flows.contains_key(k));
        }
    }

    fn evict_oldest(&mut self) {
        while let Some(key) = self.order.pop_front() {
            if self.flows.remove(&key).is_some() {
                self.stats.abandoned += 1;
                return;
            }
        }
    }
}

fn progress_reason(p: &Progress) -> Reason {
    match p {
        Progress::NotClientHello => Reason::NotClientHello,
        Progress::TooLong => Reason::UninspectableTooLong,
        Progress::Incomplete | Progress::Hello(_) => Reason::UninspectableMalformed,
    }
}
