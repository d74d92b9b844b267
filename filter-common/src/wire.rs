//! Numbers the protocols fix, named once for the program, the daemon and the tests: IP
//! protocol numbers (IANA "Assigned Internet Protocol Numbers"), ethertypes, TCP flags
//! (RFC 9293 §3.1), TLS record and handshake
//! types (RFC 8446 §5.1, §4), the server-name extension (RFC 6066 §3), QUIC versions
//! (RFC 9000 §15, RFC 9369 §3.1) and the XDP actions of the kernel's `enum xdp_action`
//! (include/uapi/linux/bpf.h).

/// IPv6 Hop-by-Hop Options extension header.
pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 Routing extension header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 Fragment extension header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// IP Authentication Header.
pub const IPPROTO_AH: u8 = 51;
/// IPv6 Destination Options extension header.
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Header lengths: Ethernet, an 802.1Q tag, IPv4 without options, IPv6 without extension
/// headers, TCP without options, UDP.
pub const ETH_HLEN: usize = 14;
pub const VLAN_HLEN: usize = 4;
pub const IPV4_HLEN_MIN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_HLEN_MIN: usize = 20;
pub const UDP_HLEN: usize = 8;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IEEE 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// IEEE 802.1ad service tag (QinQ).
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// TCP header flags (RFC 9293 §3.1).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// TLS record content type of handshake messages.
pub const TLS_CONTENT_HANDSHAKE: u8 = 22;
/// TLS handshake type of a ClientHello.
pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// TLS extension `server_name` (RFC 6066 §3).
pub const EXT_SERVER_NAME: u16 = 0;
/// TLS extension `encrypted_client_hello` (draft-ietf-tls-esni, code point 0xfe0d).
pub const EXT_ECH: u16 = 0xfe0d;
/// `NameType` of a `server_name` entry holding a DNS host name (RFC 6066 §3).
pub const SNI_HOST_NAME: u8 = 0;

/// QUIC version 1 (RFC 9000).
pub const QUIC_V1: u32 = 1;
/// QUIC version 2 (RFC 9369).
pub const QUIC_V2: u32 = 0x6b33_43cf;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
