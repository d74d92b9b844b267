//! The one enum of verdict reasons: the counter index in the program and the name the CLI
//! prints. Adding a reason means adding a variant here and its name below.

/// Why the program passed or dropped a packet. Each packet is counted under exactly one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP...): passed untouched.
    NotIp = 0,
    /// IP, but neither TCP nor UDP.
    OtherProtocol,
    /// UDP: passed (QUIC inspection is not in this program yet).
    Udp,
    /// Headers cut short or inconsistent before the payload: passed, never judged.
    HeaderMalformed,
    /// A non-first IP fragment: no ports, passed.
    IpFragment,
    /// TCP without payload (SYN, ACK, FIN...).
    TcpNoPayload,
    /// TCP payload that does not start a TLS handshake record.
    TcpNotHandshake,
    /// A TLS handshake record that does not carry a ClientHello.
    NotClientHello,
    /// A ClientHello whose names matched no rule.
    HelloAllowed,
    /// A ClientHello without a server name.
    HelloNoSni,
    /// A ClientHello whose structure is inconsistent.
    HelloMalformed,
    /// A ClientHello that does not end in this packet (reassembly is not done yet).
    HelloIncomplete,
    /// A ClientHello that needed more parser steps than the bound allows.
    HelloTooComplex,
    /// A ClientHello matched an app in `monitor` mode: passed and counted.
    HelloMonitored,
    /// A ClientHello matched an app in `drop` (or `reject`) mode: dropped.
    HelloBlocked,
    /// The program's own state could not be read (a map lookup failed): passed.
    InternalError,
}

/// Number of reasons; the size of the counters array.
pub const REASON_COUNT: u32 = Reason::InternalError as u32 + 1;

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
        Reason::Udp,
        Reason::HeaderMalformed,
        Reason::IpFragment,
        Reason::TcpNoPayload,
        Reason::TcpNotHandshake,
        Reason::NotClientHello,
        Reason::HelloAllowed,
        Reason::HelloNoSni,
        Reason::HelloMalformed,
        Reason::HelloIncomplete,
        Reason::HelloTooComplex,
        Reason::HelloMonitored,
        Reason::HelloBlocked,
        Reason::InternalError,
    ];

    /// The name counters are printed and logged under.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::OtherProtocol => "other_protocol",
            Reason::Udp => "udp",
            Reason::HeaderMalformed => "header_malformed",
            Reason::IpFragment => "ip_fragment",
            Reason::TcpNoPayload => "tcp_no_payload",
            Reason::TcpNotHandshake => "tcp_not_handshake",
            Reason::NotClientHello => "not_client_hello",
            Reason::HelloAllowed => "hello_allowed",
            Reason::HelloNoSni => "hello_no_sni",
            Reason::HelloMalformed => "hello_malformed",
            Reason::HelloIncomplete => "hello_incomplete",
            Reason::HelloTooComplex => "hello_too_complex",
            Reason::HelloMonitored => "hello_monitored",
            Reason::HelloBlocked => "hello_blocked",
            Reason::InternalError => "internal_error",
        }
    }

    /// Whether packets counted under this reason were dropped.
    pub const fn drops(self) -> bool {
        matches!(self, Reason::HelloBlocked)
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
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in Reason::ALL.iter().enumerate() {
            for b in &Reason::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
    }
}
