//! The one enum of verdict reasons: the counter index in the program and the name the CLI
//! prints. Adding a reason means adding a variant here, its name and its fate below.

/// Why the program passed or dropped a packet. Each packet is counted under exactly one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP...): passed untouched.
    NotIp = 0,
    /// IP, but neither TCP nor UDP.
    OtherProtocol,
    /// UDP to a port not inspected for QUIC: passed.
    UdpPortNotInspected,
    /// Headers cut short or inconsistent before the payload: passed, never judged.
    HeaderMalformed,
    /// A non-first IP fragment: no ports, passed (IKE, DNS... must keep working).
    IpFragment,
    /// TCP without payload (SYN, ACK, FIN...).
    TcpNoPayload,
    /// TCP to a port the configuration does not inspect.
    TcpPortNotInspected,
    /// TCP payload that does not start or continue a TLS ClientHello.
    TcpNotHandshake,
    /// A TLS handshake record that does not carry a ClientHello.
    NotClientHello,
    /// A ClientHello whose names matched no rule.
    HelloAllowed,
    /// A ClientHello without a server name.
    HelloNoSni,
    /// A ClientHello whose structure is inconsistent: the `uninspectable` policy decides.
    /// Servers refuse such hellos, but not always for the same inconsistencies: one a
    /// server reads while the program stops before the server name would pass unread.
    UninspectableMalformed,
    /// A segment of a ClientHello that goes on in a later segment: passed while reading.
    HelloIncomplete,
    /// A retransmitted segment of a hello, byte for byte the same as the first copy.
    HelloRetransmit,
    /// A ClientHello matched an app whose rules exempt this client: passed and counted.
    HelloExempt,
    /// A ClientHello matched an app in `monitor` mode: passed and counted.
    HelloMonitored,
    /// A ClientHello matched an app in `drop` or `reject` mode: dropped.
    HelloBlocked,
    /// A later packet of a flow judged blocked: dropped.
    BlockedFlow,
    /// A payload-less FIN or RST of a blocked flow: passed so both ends can clean up.
    BlockedFlowTeardown,
    /// Uninspectable: hello data at a sequence number after a gap (out of order), or data
    /// of a new connection that comes before its first byte (segments sent in reverse).
    UninspectableOutOfOrder,
    /// Uninspectable: bytes that overlap earlier hello bytes with different content.
    UninspectableOverlap,
    /// Uninspectable: an IP fragment that starts a hello.
    UninspectableFragment,
    /// Uninspectable: the reassembly table is full.
    UninspectableTableFull,
    /// Uninspectable: another CPU was reading the same hello at that moment.
    UninspectableBusy,
    /// Uninspectable: the hello needs more segments, bytes or steps than the bounds allow.
    UninspectableTooLong,
    /// Uninspectable: more IPv6 extension headers than the walk allows.
    UninspectableIpv6Chain,
    /// Uninspectable: TCP urgent data in a hello. The server's TCP removes the urgent byte
    /// from the stream its application reads, so the bytes the program sees are not the
    /// hello the server gets.
    UninspectableUrgent,
    /// QUIC with `quic = "allow"`: passed uninspected.
    QuicNotInspected,
    /// A QUIC packet that is not a client's Initial (short header, Handshake, 0-RTT):
    /// passed; its flow's verdict, if blocked, was checked first.
    QuicNotInitial,
    /// A client Initial in a datagram under 1200 bytes, which servers must discard (RFC 9000
    /// §14.1): passed, never handed to the daemon.
    QuicInitialTooSmall,
    /// A client Initial of a flow not judged yet, handed to the daemon: passed.
    QuicInitialQueued,
    /// As `quic_initial_queued`, held (dropped) until the verdict exists: clients retransmit.
    QuicInitialHeld,
    /// An Initial of a flow the daemon judged allowed: passed.
    QuicFlowAllowed,
    /// `quic = "block"`: every QUIC Initial dropped, so clients fall back to TCP.
    QuicBlockedByPolicy,
    /// No live daemon to judge QUIC (its heartbeat is stale): the Initial is dropped so the
    /// client falls back to TCP, which the program judges alone.
    QuicDaemonAbsent,
    /// Uninspectable: a long-header QUIC packet of a version other than 1 and 2.
    UninspectableQuicVersion,
    /// Uninspectable: more Initials of one flow than are handed to the daemon before it
    /// reaches a verdict.
    UninspectableQuicBudget,
    /// Uninspectable: the queue to the daemon is full.
    UninspectableQuicQueueFull,
    /// Uninspectable: an Initial datagram longer than is copied to the daemon.
    UninspectableQuicTooLarge,
    /// The program's own state could not be read (a map lookup failed): passed.
    InternalError,
}

/// Number of reasons; the size of the counters array.
pub const REASON_COUNT: u32 = Reason::InternalError as u32 + 1;

/// What happens to a packet counted under a reason in `mode = "enforce"`. In `mode =
/// "monitor"` a packet whose fate is to be dropped passes (the note `monitor_passed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pass,
    Drop,
    /// The configured `uninspectable` policy decides.
    Policy,
}

/// The reason with this counter index; `InternalError` for an index out of range.
#[inline(always)]
pub const fn reason_from_u32(v: u32) -> Reason {
    if v < REASON_COUNT {
        Reason::ALL[v as usize]
    } else {
        Reason::InternalError
    }
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::NotIp,
        Reason::OtherProtocol,
        Reason::UdpPortNotInspected,
        Reason::HeaderMalformed,
        Reason::IpFragment,
        Reason::TcpNoPayload,
        Reason::TcpPortNotInspected,
        Reason::TcpNotHandshake,
        Reason::NotClientHello,
        Reason::HelloAllowed,
        Reason::HelloNoSni,
        Reason::UninspectableMalformed,
        Reason::HelloIncomplete,
        Reason::HelloRetransmit,
        Reason::HelloExempt,
        Reason::HelloMonitored,
        Reason::HelloBlocked,
        Reason::BlockedFlow,
        Reason::BlockedFlowTeardown,
        Reason::UninspectableOutOfOrder,
        Reason::UninspectableOverlap,
        Reason::UninspectableFragment,
        Reason::UninspectableTableFull,
        Reason::UninspectableBusy,
        Reason::UninspectableTooLong,
        Reason::UninspectableIpv6Chain,
        Reason::UninspectableUrgent,
        Reason::QuicNotInspected,
        Reason::QuicNotInitial,
        Reason::QuicInitialTooSmall,
        Reason::QuicInitialQueued,
        Reason::QuicInitialHeld,
        Reason::QuicFlowAllowed,
        Reason::QuicBlockedByPolicy,
        Reason::QuicDaemonAbsent,
        Reason::UninspectableQuicVersion,
        Reason::UninspectableQuicBudget,
        Reason::UninspectableQuicQueueFull,
        Reason::UninspectableQuicTooLarge,
        Reason::InternalError,
    ];

    /// The name counters are printed and logged under.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::OtherProtocol => "other_protocol",
            Reason::UdpPortNotInspected => "udp_port_not_inspected",
            Reason::HeaderMalformed => "header_malformed",
            Reason::IpFragment => "ip_fragment",
            Reason::TcpNoPayload => "tcp_no_payload",
            Reason::TcpPortNotInspected => "tcp_port_not_inspected",
            Reason::TcpNotHandshake => "tcp_not_handshake",
            Reason::NotClientHello => "not_client_hello",
            Reason::HelloAllowed => "hello_allowed",
            Reason::HelloNoSni => "hello_no_sni",
            Reason::UninspectableMalformed => "uninspectable_malformed",
            Reason::HelloIncomplete => "hello_incomplete",
            Reason::HelloRetransmit => "hello_retransmit",
            Reason::HelloExempt => "hello_exempt",
            Reason::HelloMonitored => "hello_monitored",
            Reason::HelloBlocked => "hello_blocked",
            Reason::BlockedFlow => "blocked_flow",
            Reason::BlockedFlowTeardown => "blocked_flow_teardown",
            Reason::UninspectableOutOfOrder => "uninspectable_out_of_order",
            Reason::UninspectableOverlap => "uninspectable_overlap",
            Reason::UninspectableFragment => "uninspectable_ip_fragment",
            Reason::UninspectableTableFull => "uninspectable_table_full",
            Reason::UninspectableBusy => "uninspectable_busy",
            Reason::UninspectableTooLong => "uninspectable_too_long",
            Reason::UninspectableIpv6Chain => "uninspectable_ipv6_chain",
            Reason::UninspectableUrgent => "uninspectable_urgent",
            Reason::QuicNotInspected => "quic_not_inspected",
            Reason::QuicNotInitial => "quic_not_initial",
            Reason::QuicInitialTooSmall => "quic_initial_too_small",
            Reason::QuicInitialQueued => "quic_initial_queued",
            Reason::QuicInitialHeld => "quic_initial_held",
            Reason::QuicFlowAllowed => "quic_flow_allowed",
            Reason::QuicBlockedByPolicy => "quic_blocked_by_policy",
            Reason::QuicDaemonAbsent => "quic_daemon_absent",
            Reason::UninspectableQuicVersion => "uninspectable_quic_version",
            Reason::UninspectableQuicBudget => "uninspectable_quic_budget",
            Reason::UninspectableQuicQueueFull => "uninspectable_quic_queue",
            Reason::UninspectableQuicTooLarge => "uninspectable_quic_large",
            Reason::InternalError => "internal_error",
        }
    }

    /// What happens to packets counted under this reason.
    pub const fn fate(self) -> Fate {
        match self {
            Reason::HelloBlocked
            | Reason::BlockedFlow
            | Reason::QuicInitialHeld
            | Reason::QuicBlockedByPolicy
            | Reason::QuicDaemonAbsent => Fate::Drop,
            Reason::UninspectableMalformed
            | Reason::UninspectableOutOfOrder
            | Reason::UninspectableOverlap
            | Reason::UninspectableFragment
            | Reason::UninspectableTableFull
            | Reason::UninspectableBusy
            | Reason::UninspectableTooLong
            | Reason::UninspectableIpv6Chain
            | Reason::UninspectableUrgent
            | Reason::UninspectableQuicVersion
            | Reason::UninspectableQuicBudget
            | Reason::UninspectableQuicQueueFull
            | Reason::UninspectableQuicTooLarge => Fate::Policy,
            _ => Fate::Pass,
        }
    }

    /// Whether the reason is one of the `uninspectable` ones.
    pub const fn uninspectable(self) -> bool {
        matches!(self.fate(), Fate::Policy)
    }
}

/// Things worth counting that are not a packet's verdict: a packet may add to several.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// A hello carried an `encrypted_client_hello` extension (real or GREASE).
    EchSeen = 0,
    /// A server name was read from a TCP segment after the hello's first.
    SniFromLaterSegment,
    /// A frame carried one or more VLAN tags.
    VlanTagged,
    /// An IPv6 packet carried extension headers.
    Ipv6ExtHeaders,
    /// A hello went on past its first segment and its reassembly began.
    ReassemblyStarted,
    /// A blocked verdict could not be stored (verdict table full): later packets of that
    /// flow are judged again by their content only.
    VerdictTableFull,
    /// A blocked verdict ended because the client opened a new connection on its 5-tuple.
    VerdictEndedBySyn,
    /// A blocked verdict ended after the idle timeout.
    VerdictExpired,
    /// A TCP RST was sent to a client (`reject`).
    ResetSent,
    /// A RST could not be built; the packet was dropped instead.
    ResetFailed,
    /// An event was lost because the ring buffer was full.
    EventLost,
    /// A hello whole in one segment was read straight from the packet (the fast path)
    /// rather than by the walker.
    HelloReadFast,
    /// A packet that would have been dropped or answered with a reset passed because the
    /// filter runs in `mode = "monitor"`; its reason counts it as in enforce mode.
    MonitorPassed,
}

pub const NOTE_COUNT: u32 = Note::MonitorPassed as u32 + 1;

impl Note {
    pub const ALL: [Note; NOTE_COUNT as usize] = [
        Note::EchSeen,
        Note::SniFromLaterSegment,
        Note::VlanTagged,
        Note::Ipv6ExtHeaders,
        Note::ReassemblyStarted,
        Note::VerdictTableFull,
        Note::VerdictEndedBySyn,
        Note::VerdictExpired,
        Note::ResetSent,
        Note::ResetFailed,
        Note::EventLost,
        Note::HelloReadFast,
        Note::MonitorPassed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Note::EchSeen => "ech_seen",
            Note::SniFromLaterSegment => "sni_from_later_segment",
            Note::VlanTagged => "vlan_tagged",
            Note::Ipv6ExtHeaders => "ipv6_extension_headers",
            Note::ReassemblyStarted => "reassembly_started",
            Note::VerdictTableFull => "verdict_table_full",
            Note::VerdictEndedBySyn => "verdict_ended_by_syn",
            Note::VerdictExpired => "verdict_expired",
            Note::ResetSent => "reset_sent",
            Note::ResetFailed => "reset_failed",
            Note::EventLost => "event_lost",
            Note::HelloReadFast => "hello_read_fast",
            Note::MonitorPassed => "monitor_passed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_counter_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{} out of order", r.name());
        }
        for (i, n) in Note::ALL.iter().enumerate() {
            assert_eq!(*n as usize, i, "{} out of order", n.name());
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in Reason::ALL.iter().enumerate() {
            for b in &Reason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
        for (i, a) in Note::ALL.iter().enumerate() {
            for b in &Note::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }

    #[test]
    fn only_uninspectable_reasons_follow_the_policy() {
        for r in Reason::ALL {
            assert_eq!(
                r.uninspectable(),
                r.name().starts_with("uninspectable_"),
                "{}",
                r.name()
            );
        }
    }
}
