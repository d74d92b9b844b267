//! The program's answer to a case compared with the oracle's: actions, counters and the
//! one event, each difference a line; what one path of the program did, for comparing the
//! fast path with the walker; and the tally of cases and disagreements the run prints.

use std::collections::BTreeSet;

use filter_common::{
    EVENT_ECH, EVENT_SNI_LATER_SEGMENT, Event, EventAction, Note, REASON_COUNT, Reason,
    reason_from_u32,
};
use sni_filter::filter::Filter;

use super::generate::{Case, JUMBO_MSS};
use super::oracle::{Expected, Flow};

/// An event as the tests compare and print it: everything but its time and flow.
pub fn describe_event(e: &Event) -> String {
    format!(
        "{}/{} app {} flags {:#x} {}",
        reason_from_u32(u32::from(e.reason)).name(),
        event_action_name(e.action),
        e.app,
        e.flags,
        show_name(&e.sni[..usize::from(e.sni_len).min(e.sni.len())])
    )
}

pub fn event_action_name(action: u8) -> String {
    EventAction::from_u8(action).map_or_else(|| format!("action {action}"), |a| a.name().into())
}

pub fn show_name(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// Runs one case through the filter; returns what went differently than expected.
pub fn run_case(filter: &mut Filter, case: &Case, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let before = filter.counters().expect("counters readable");
    let actions: Vec<u32> = case
        .frames
        .iter()
        .map(|frame| filter.run_frame(frame).expect("test run"))
        .collect();
    let after_hello = filter.run_frame(&case.after).expect("test run");
    let after = filter.counters().expect("counters readable");
    let events = filter.drain_events().expect("events readable");

    let want: Vec<u32> = expected.frames.iter().map(|(a, _)| *a).collect();
    if actions.last() != want.last() {
        problems.push(format!(
            "last frame: action {:?}, expected {:?}",
            actions.last(),
            want.last()
        ));
    }
    if actions[..actions.len() - 1] != want[..want.len() - 1] {
        problems.push(format!("frame actions {actions:?}, expected {want:?}"));
    }
    if after_hello != expected.after.0 {
        problems.push(format!(
            "data after the hello: action {after_hello}, expected {}",
            expected.after.0
        ));
    }
    let mut counted = vec![0u64; REASON_COUNT as usize];
    for (_, reason) in expected.frames.iter().chain([&expected.after]) {
        counted[*reason as usize] += 1;
    }
    let moved: Vec<String> = (0..REASON_COUNT)
        .filter_map(|r| {
            let i = r as usize;
            let delta = after[i].packets - before[i].packets;
            (delta != counted[i]).then(|| {
                format!(
                    "{} {delta} (expected {})",
                    reason_from_u32(r).name(),
                    counted[i]
                )
            })
        })
        .collect();
    if !moved.is_empty() {
        problems.push(format!("counters: {}", moved.join(", ")));
    }

    let [event] = &events[..] else {
        let list: Vec<String> = events.iter().map(describe_event).collect();
        problems.push(format!(
            "{} events, expected one ({})",
            events.len(),
            list.join("; ")
        ));
        return problems;
    };
    problems.extend(check_event(event, expected));
    problems
}

/// What in the one event of a case differs from the expectation.
pub fn check_event(event: &Event, expected: &Expected) -> Vec<String> {
    let mut problems = Vec::new();
    let reason = reason_from_u32(u32::from(event.reason));
    if reason != expected.reason {
        problems.push(format!(
            "event reason {}, expected {}",
            reason.name(),
            expected.reason.name()
        ));
    }
    if event.action != expected.action as u8 {
        problems.push(format!(
            "event action {}, expected {}",
            event_action_name(event.action),
            expected.action.name()
        ));
    }
    if event.app != expected.app {
        problems.push(format!(
            "event app {}, expected {}",
            event.app, expected.app
        ));
    }
    let sni = &event.sni[..usize::from(event.sni_len).min(event.sni.len())];
    if sni != expected.sni {
        problems.push(format!(
            "event name {} ({} bytes), expected {} ({} bytes)",
            show_name(sni),
            event.sni_len,
            show_name(&expected.sni),
            expected.sni.len()
        ));
    }
    if event.flags & !expected.flags_either != expected.flags {
        problems.push(format!(
            "event flags {:#04x}, expected {:#04x} (ECH {EVENT_ECH:#x}, name from a later segment {EVENT_SNI_LATER_SEGMENT:#x})",
            event.flags, expected.flags
        ));
    }
    let flow = Flow::of_event(event);
    if flow != expected.flow || event.flow.proto != 6 {
        problems.push(format!(
            "event flow {flow:?} proto {}, expected {:?} proto 6",
            event.flow.proto, expected.flow
        ));
    }
    problems
}

#[derive(Default)]
pub struct Tally {
    pub cases: usize,
    pub split: usize,
    pub segments: usize,
    pub multi_record: usize,
    pub records: usize,
    pub names_cut: usize,
    pub ipv6: usize,
    pub vlan: usize,
    pub jumbo: usize,
    pub banned: usize,
    pub no_sni: usize,
    pub tail_decoys: usize,
    pub disagreements: usize,
    /// Cases that disagree, by what part of the program's answer differs.
    pub kinds: std::collections::BTreeMap<&'static str, usize>,
}

impl Tally {
    pub fn count(&mut self, case: &Case, expected: &Expected) {
        self.segments += case.frames.len();
        self.split += usize::from(case.frames.len() > 1);
        self.ipv6 += usize::from(case.v6);
        self.vlan += usize::from(case.vlans > 0);
        self.jumbo += usize::from(case.mss == JUMBO_MSS);
        self.no_sni += usize::from(case.names.is_empty());
        self.tail_decoys += usize::from(case.tail_decoy);
        self.records += expected.records;
        self.multi_record += usize::from(expected.records > 1);
        self.names_cut += usize::from(expected.name_cut);
        self.banned += usize::from(expected.reason == Reason::HelloBlocked);
    }

    pub fn disagree(&mut self, problems: &[String]) {
        self.disagreements += 1;
        let kinds: BTreeSet<&str> = problems.iter().map(|p| kind(p)).collect();
        for k in kinds {
            *self.kinds.entry(k).or_default() += 1;
        }
    }

    pub fn summary(&self, seconds: f64) -> String {
        let kinds = if self.kinds.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = self.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "differential: {} cases, {} split hellos ({} segments), {} records ({} hellos in \
             several), {} names cut across segments, {} IPv6, {} VLAN-tagged, {} jumbo, {} banned, \
             {} without SNI, {} tail decoys, {} disagreements{kinds}, {seconds:.1} s",
            self.cases,
            self.split,
            self.segments,
            self.records,
            self.multi_record,
            self.names_cut,
            self.ipv6,
            self.vlan,
            self.jumbo,
            self.banned,
            self.no_sni,
            self.tail_decoys,
            self.disagreements,
        )
    }
}

/// What part of the program's answer a problem is about, for the summary.
pub fn kind(problem: &str) -> &'static str {
    if ["last frame", "frame actions", "data after"]
        .iter()
        .any(|p| problem.starts_with(p))
    {
        "verdict"
    } else if problem.starts_with("counters") {
        "counters"
    } else if problem.starts_with("event flags") {
        "event flags"
    } else if problem.starts_with("event flow") {
        "event flow"
    } else if problem.starts_with("the test's own") {
        "test parsers"
    } else {
        "events"
    }
}

/// What one path did with a case's frames: the action of each, the reasons and notes that
/// moved, and its events without their times.
#[derive(Debug, PartialEq, Eq)]
pub struct Observed {
    pub actions: Vec<u32>,
    pub reasons: Vec<(Reason, u64)>,
    pub notes: Vec<u64>,
    pub events: Vec<String>,
}

pub fn observe(filter: &mut Filter, frames: &[&Vec<u8>]) -> Result<Observed, String> {
    let _ = filter.drain_events();
    let before = filter.counters().expect("counters readable");
    let notes_before = filter.notes().expect("notes readable");
    let mut actions = Vec::new();
    for frame in frames {
        actions.push(
            filter
                .run_frame(frame)
                .map_err(|e| format!("the program failed: {e}"))?,
        );
    }
    let after = filter.counters().expect("counters readable");
    let notes_after = filter.notes().expect("notes readable");
    let reasons = (0..REASON_COUNT)
        .filter_map(|r| {
            let delta = after[r as usize].packets - before[r as usize].packets;
            (delta != 0).then(|| (reason_from_u32(r), delta))
        })
        .collect();
    // Which path read the hello is the one thing allowed to differ.
    let notes = notes_after
        .iter()
        .zip(&notes_before)
        .enumerate()
        .filter(|(i, _)| *i != Note::HelloReadFast as usize)
        .map(|(_, (a, b))| a - b)
        .collect();
    let events = filter
        .drain_events()
        .expect("events readable")
        .iter()
        .map(describe_event)
        .collect();
    Ok(Observed {
        actions,
        reasons,
        notes,
        events,
    })
}
