//! The frames that carry crafted hellos: Ethernet with 0-2 VLAN tags, IPv4 or IPv6, TCP
//! segments (any flags, sequence numbers, splits) and UDP datagrams, checksums filled in.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::split_at_offsets;

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6Header, SingleVlanHeader, TcpHeader,
    UdpHeader, VlanId, VlanPcp,
};

/// 802.1Q customer tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service (outer) tag protocol identifier.
pub const TPID_8021AD: u16 = 0x88a8;

/// One VLAN tag in front of the frame's ethertype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub vid: u16,
}

impl VlanTag {
    /// An 802.1Q (customer) tag.
    pub const fn dot1q(vid: u16) -> Self {
        Self {
            tpid: TPID_8021Q,
            vid,
        }
    }

    /// An 802.1ad (service, outer) tag.
    pub const fn dot1ad(vid: u16) -> Self {
        Self {
            tpid: TPID_8021AD,
            vid,
        }
    }
}

/// The Ethernet header of a frame: addresses and 0, 1 or 2 VLAN tags, outermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlans: Vec<VlanTag>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlans: Vec::new(),
        }
    }
}

impl Link {
    /// Default addresses with these VLAN tags, outermost first.
    pub fn with_vlans(vlans: &[VlanTag]) -> Self {
        Self {
            vlans: vlans.to_vec(),
            ..Self::default()
        }
    }

    fn write(&self, frame: &mut Vec<u8>, payload_type: EtherType) {
        let types: Vec<EtherType> = self
            .vlans
            .iter()
            .map(|tag| EtherType(tag.tpid))
            .chain(std::iter::once(payload_type))
            .collect();
        frame.extend_from_slice(
            &Ethernet2Header {
                source: self.src_mac,
                destination: self.dst_mac,
                ether_type: types[0],
            }
            .to_bytes(),
        );
        for (tag, next) in self.vlans.iter().zip(&types[1..]) {
            frame.extend_from_slice(
                &SingleVlanHeader {
                    pcp: VlanPcp::ZERO,
                    drop_eligible_indicator: false,
                    vlan_id: VlanId::try_new(tag.vid & 0x0fff).unwrap_or(VlanId::ZERO),
                    ether_type: *next,
                }
                .to_bytes(),
            );
        }
    }
}

/// Source and destination addresses of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpPair {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl IpPair {
    /// Documentation addresses (RFC 5737): 192.0.2.1 to 198.51.100.1.
    pub const fn v4_example() -> Self {
        Self::V4 {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 1),
        }
    }

    /// Documentation addresses (RFC 3849): `2001:db8::1` to `2001:db8:1::1`.
    pub const fn v6_example() -> Self {
        Self::V6 {
            src: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
        }
    }

    /// The same pair with source and destination swapped (the answer's direction).
    #[must_use]
    pub const fn reversed(self) -> Self {
        match self {
            Self::V4 { src, dst } => Self::V4 { src: dst, dst: src },
            Self::V6 { src, dst } => Self::V6 { src: dst, dst: src },
        }
    }

    /// Writes the IP header for `l4_len` bytes of `protocol` and returns the pseudo-header
    /// addresses for the transport checksum.
    fn write(self, frame: &mut Vec<u8>, protocol: IpNumber, l4_len: usize) -> IpHeader {
        match self {
            Self::V4 { src, dst } => {
                let mut ip =
                    Ipv4Header::new(l4_len as u16, 64, protocol, src.octets(), dst.octets())
                        .unwrap_or_default();
                ip.header_checksum = ip.calc_header_checksum();
                frame.extend_from_slice(&ip.to_bytes());
                IpHeader::V4(ip)
            }
            Self::V6 { src, dst } => {
                let ip = Ipv6Header {
                    traffic_class: 0,
                    flow_label: etherparse::Ipv6FlowLabel::ZERO,
                    payload_length: l4_len as u16,
                    next_header: protocol,
                    hop_limit: 64,
                    source: src.octets(),
                    destination: dst.octets(),
                };
                frame.extend_from_slice(&ip.to_bytes());
                IpHeader::V6(ip)
            }
        }
    }

    fn ether_type(self) -> EtherType {
        match self {
            Self::V4 { .. } => EtherType::IPV4,
            Self::V6 { .. } => EtherType::IPV6,
        }
    }
}

enum IpHeader {
    V4(Ipv4Header),
    V6(Ipv6Header),
}

/// TCP flags of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one bool per wire flag
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub psh: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    const NONE: Self = Self {
        syn: false,
        ack: false,
        psh: false,
        fin: false,
        rst: false,
    };
    pub const SYN: Self = Self {
        syn: true,
        ..Self::NONE
    };
    pub const SYN_ACK: Self = Self {
        syn: true,
        ack: true,
        ..Self::NONE
    };
    pub const ACK: Self = Self {
        ack: true,
        ..Self::NONE
    };
    /// What a data segment of an established flow carries.
    pub const PSH_ACK: Self = Self {
        ack: true,
        psh: true,
        ..Self::NONE
    };
    pub const FIN_ACK: Self = Self {
        ack: true,
        fin: true,
        ..Self::NONE
    };
    pub const RST: Self = Self {
        rst: true,
        ..Self::NONE
    };
}

/// A TCP segment's headers: build one frame or a run of consecutive frames from a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub link: Link,
    pub ip: IpPair,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
}

impl TcpSegment {
    /// A PSH|ACK data segment from `src_port` to `dst_port` at sequence number 1000.
    pub fn new(ip: IpPair, src_port: u16, dst_port: u16) -> Self {
        Self {
            link: Link::default(),
            ip,
            src_port,
            dst_port,
            seq: 1000,
            ack: 1,
            flags: TcpFlags::PSH_ACK,
            window: 502,
        }
    }

    /// The full frame carrying `payload`, with correct IPv4 header and TCP checksums.
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut tcp = TcpHeader::new(self.src_port, self.dst_port, self.seq, self.window);
        tcp.acknowledgment_number = self.ack;
        tcp.syn = self.flags.syn;
        tcp.ack = self.flags.ack;
        tcp.psh = self.flags.psh;
        tcp.fin = self.flags.fin;
        tcp.rst = self.flags.rst;
        let mut frame = Vec::with_capacity(payload.len() + 80);
        self.link.write(&mut frame, self.ip.ether_type());
        let ip = self
            .ip
            .write(&mut frame, IpNumber::TCP, tcp.header_len() + payload.len());
        tcp.checksum = match ip {
            IpHeader::V4(ip) => tcp.calc_checksum_ipv4(&ip, payload),
            IpHeader::V6(ip) => tcp.calc_checksum_ipv6(&ip, payload),
        }
        .unwrap_or_default();
        frame.extend_from_slice(&tcp.to_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// The frames carrying `payload` cut into segments of at most `mss` bytes (at least 1),
    /// sequence numbers advancing from `self.seq`.
    pub fn frames(&self, payload: &[u8], mss: usize) -> Vec<Vec<u8>> {
        self.frames_of(payload.chunks(mss.max(1)))
    }

    /// The frames carrying `payload` cut at the given offsets, e.g. inside the server name.
    pub fn frames_split(&self, payload: &[u8], offsets: &[usize]) -> Vec<Vec<u8>> {
        self.frames_of(split_at_offsets(payload, offsets).into_iter())
    }

    fn frames_of<'a>(&self, parts: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
        let mut segment = self.clone();
        parts
            .map(|part| {
                let frame = segment.frame(part);
                segment.seq = segment.seq.wrapping_add(part.len() as u32);
                frame
            })
            .collect()
    }
}

/// A UDP datagram's headers (QUIC Initials and other UDP cases).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpDatagram {
    pub link: Link,
    pub ip: IpPair,
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpDatagram {
    pub fn new(ip: IpPair, src_port: u16, dst_port: u16) -> Self {
        Self {
            link: Link::default(),
            ip,
            src_port,
            dst_port,
        }
    }

    /// The full frame carrying `payload`, with correct IPv4 header and UDP checksums.
    pub fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(payload.len() + 70);
        self.link.write(&mut frame, self.ip.ether_type());
        let ip = self
            .ip
            .write(&mut frame, IpNumber::UDP, UdpHeader::LEN + payload.len());
        let udp = match ip {
            IpHeader::V4(ip) => {
                UdpHeader::with_ipv4_checksum(self.src_port, self.dst_port, &ip, payload)
            }
            IpHeader::V6(ip) => {
                UdpHeader::with_ipv6_checksum(self.src_port, self.dst_port, &ip, payload)
            }
        }
        .unwrap_or_default();
        frame.extend_from_slice(&udp.to_bytes());
        frame.extend_from_slice(payload);
        frame
    }
}
