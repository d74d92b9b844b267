//! Names of the maps and the program as they appear in the compiled object. aya's
//! `#[map(name = ...)]` wants a literal, so a test checks these against the object.

pub const PROGRAM: &str = "sni_filter";
/// The judging program the header program tail-calls through `JUDGE`.
pub const JUDGE_PROGRAM: &str = "sni_judge";
pub const JUDGE: &str = "JUDGE";
/// Benchmark floors: an XDP program that passes everything, one that drops everything.
pub const BENCH_PASS: &str = "bench_pass";
pub const BENCH_DROP: &str = "bench_drop";
pub const COUNTERS: &str = "COUNTERS";
pub const RULES: &str = "RULES";
pub const APPS: &str = "APPS";
pub const SETTINGS: &str = "SETTINGS";
pub const EVENTS: &str = "EVENTS";
pub const NOTES: &str = "NOTES";
pub const IFACE_COUNTERS: &str = "IFACE_COUNTERS";
pub const APP_COUNTERS: &str = "APP_COUNTERS";
pub const VERDICTS: &str = "VERDICTS";
pub const HELLOS: &str = "HELLOS";
pub const EXEMPT: &str = "EXEMPT";
pub const SCOPES: &str = "SCOPES";
pub const WILDCARDS: &str = "WILDCARDS";
/// One `u32`: the [`LAYOUT_VERSION`](crate::LAYOUT_VERSION) of the maps pinned with it.
pub const LAYOUT: &str = "LAYOUT";
/// The ring of client QUIC Initials handed to the daemon.
pub const QUIC_INITIALS: &str = "QUIC_INITIALS";
/// Per-flow state of QUIC flows not judged blocked: Initials handed on, allowed.
pub const QUIC_FLOWS: &str = "QUIC_FLOWS";
/// One `u64`: when the daemon's QUIC worker last showed it is alive.
pub const QUIC_HEARTBEAT: &str = "QUIC_HEARTBEAT";
/// Two bitmaps of the flows that may have state (`FlowHints`), and the side in force.
pub const FLOW_HINTS: &str = "FLOW_HINTS";
pub const HINT_SIDE: &str = "HINT_SIDE";
/// Connections between their SYN and their hello.
pub const OPENING: &str = "OPENING";
/// Every map the daemon reads or writes (a test checks each is in the object).
pub const MAPS: [&str; 21] = [
    JUDGE,
    LAYOUT,
    EXEMPT,
    SCOPES,
    WILDCARDS,
    COUNTERS,
    RULES,
    APPS,
    SETTINGS,
    EVENTS,
    NOTES,
    IFACE_COUNTERS,
    APP_COUNTERS,
    VERDICTS,
    HELLOS,
    QUIC_INITIALS,
    QUIC_FLOWS,
    QUIC_HEARTBEAT,
    FLOW_HINTS,
    HINT_SIDE,
    OPENING,
];
