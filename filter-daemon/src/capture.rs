//! Packet captures (pcap and pcapng) read record by record, and each record turned into the
//! Ethernet frame the XDP program parses, whatever link layer the capture recorded.

use std::{
    borrow::Cow,
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
};

use filter_common::wire::{
    ETH_HLEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN,
};
use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

use crate::Error;

/// Link types (`LINKTYPE_*` of the tcpdump.org registry) that [`to_ethernet`] maps.
pub mod linktype {
    /// BSD loopback: a 4-byte address family in the writer's byte order.
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// PPP (RFC 1661), with or without the HDLC-like address and control bytes (RFC 1662).
    pub const PPP: u32 = 9;
    /// `DLT_RAW` as written by old libpcaps on most systems, before `LINKTYPE_RAW` existed.
    pub const RAW_12: u32 = 12;
    /// `DLT_RAW` as written by old libpcaps on OpenBSD.
    pub const RAW_14: u32 = 14;
    /// Raw IP, v4 or v6 told by the version nibble.
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: like [`NULL`], the family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// Length of the Linux cooked header v1; its protocol (an Ethernet type) is the last 2 bytes.
const SLL_HLEN: usize = 16;
/// Length of the Linux cooked header v2; its protocol (an Ethernet type) is the first 2 bytes.
const SLL2_HLEN: usize = 20;
/// The address family word of `NULL` and `LOOP` captures.
const LOOPBACK_HLEN: usize = 4;
const AF_INET: u32 = 2;
/// `AF_INET6` differs between the systems that write loopback captures: NetBSD and OpenBSD,
/// FreeBSD and its forks, macOS.
const AF_INET6_BSD: [u32; 3] = [24, 28, 30];
/// Locally administered addresses for synthesised headers: the program never reads them,
/// but a frame shown in a debugger should not look like real hardware.
const SYNTH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SYNTH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Why a packet was not run through the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A link type [`to_ethernet`] does not map onto Ethernet.
    LinkType(u32),
    /// The link layer says the payload is neither IPv4 nor IPv6 (ARP on a cooked capture...).
    NotIp,
    /// Shorter than its link-layer header.
    Truncated,
}

/// The Ethernet frame the program expects for a packet of this link type: Ethernet frames
/// as they are (the program parses VLAN tags itself), other link layers replaced by a
/// synthesised Ethernet header with the Ethernet type of the payload.
pub fn to_ethernet(linktype: u32, data: &[u8]) -> Result<Cow<'_, [u8]>, Skip> {
    match linktype {
        linktype::ETHERNET => {
            if data.len() < ETH_HLEN {
                return Err(Skip::Truncated);
            }
            Ok(Cow::Borrowed(data))
        }
        linktype::LINUX_SLL => {
            let (header, payload) = split(data, SLL_HLEN)?;
            ethernet_over(u16::from_be_bytes([header[14], header[15]]), payload)
        }
        linktype::LINUX_SLL2 => {
            let (header, payload) = split(data, SLL2_HLEN)?;
            ethernet_over(u16::from_be_bytes([header[0], header[1]]), payload)
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 => match data.first() {
            None => Err(Skip::Truncated),
            Some(b) if b >> 4 == 4 => Ok(with_ethernet_header(ETHERTYPE_IPV4, data)),
            Some(b) if b >> 4 == 6 => Ok(with_ethernet_header(ETHERTYPE_IPV6, data)),
            Some(_) => Err(Skip::NotIp),
        },
        linktype::IPV4 | linktype::IPV6 if data.is_empty() => Err(Skip::Truncated),
        linktype::IPV4 => Ok(with_ethernet_header(ETHERTYPE_IPV4, data)),
        linktype::IPV6 => Ok(with_ethernet_header(ETHERTYPE_IPV6, data)),
        linktype::NULL | linktype::LOOP => {
            let (header, payload) = split(data, LOOPBACK_HLEN)?;
            // NULL is in the writer's byte order, LOOP in network order; families are small
            // numbers, so whichever reading is small is the right one.
            let family = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let family = if family > 0xffff {
                family.swap_bytes()
            } else {
                family
            };
            match family {
                AF_INET => Ok(with_ethernet_header(ETHERTYPE_IPV4, payload)),
                f if AF_INET6_BSD.contains(&f) => Ok(with_ethernet_header(ETHERTYPE_IPV6, payload)),
                _ => Err(Skip::NotIp),
            }
        }
        linktype::PPP => ppp(data),
        other => Err(Skip::LinkType(other)),
    }
}

/// PPP's protocol numbers of IPv4 and IPv6 (RFC 1332, RFC 5072).
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

fn ppp(data: &[u8]) -> Result<Cow<'_, [u8]>, Skip> {
    // HDLC-like framing starts with address 0xff and control 0x03 (RFC 1662 §3.1).
    let data = data.strip_prefix(&[0xff, 0x03]).unwrap_or(data);
    let (protocol, payload) = match data {
        // A compressed (1-byte) protocol field has its low bit set (RFC 1661 §6.5).
        [p, rest @ ..] if p & 1 == 1 => (u16::from(*p), rest),
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => return Err(Skip::Truncated),
    };
    match protocol {
        PPP_IPV4 => Ok(with_ethernet_header(ETHERTYPE_IPV4, payload)),
        PPP_IPV6 => Ok(with_ethernet_header(ETHERTYPE_IPV6, payload)),
        _ => Err(Skip::NotIp),
    }
}

/// A link type as the registry names it, for messages: `PPP (9)`.
pub fn linktype_name(linktype: u32) -> String {
    match DataLink::from(linktype) {
        DataLink::Unknown(n) => format!("{n}"),
        known => format!("{known:?} ({linktype})"),
    }
}

fn split(data: &[u8], header_len: usize) -> Result<(&[u8], &[u8]), Skip> {
    if data.len() < header_len {
        return Err(Skip::Truncated);
    }
    Ok(data.split_at(header_len))
}

/// A cooked header's protocol field is an Ethernet type; a VLAN tag kept by the capture sits in
/// the payload exactly where it would follow an Ethernet header.
fn ethernet_over(protocol: u16, payload: &[u8]) -> Result<Cow<'static, [u8]>, Skip> {
    match protocol {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 | ETHERTYPE_VLAN | ETHERTYPE_QINQ => {
            Ok(with_ethernet_header(protocol, payload))
        }
        _ => Err(Skip::NotIp),
    }
}

fn with_ethernet_header(ethertype: u16, payload: &[u8]) -> Cow<'static, [u8]> {
    let mut frame = Vec::with_capacity(ETH_HLEN + payload.len());
    frame.extend_from_slice(&SYNTH_DST);
    frame.extend_from_slice(&SYNTH_SRC);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    Cow::Owned(frame)
}

/// One record of a capture.
#[derive(Debug)]
pub enum Record {
    /// A packet as captured, with the link type of the interface it was captured on.
    Packet { linktype: u32, data: Vec<u8> },
    /// A record that could not be parsed. Records are framed by the lengths of the ones
    /// before, so reading stops there.
    Unreadable(String),
}

/// An open pcap or pcapng file, read one record at a time.
pub struct Capture {
    path: PathBuf,
    source: Source,
    /// Set after an unreadable record.
    stopped: bool,
}

enum Source {
    Pcap {
        reader: PcapReader<File>,
        linktype: u32,
    },
    PcapNg(PcapNgReader<File>),
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
/// Microsecond and nanosecond pcap, either byte order.
const PCAP_MAGICS: [u32; 4] = [0xa1b2_c3d4, 0xd4c3_b2a1, 0xa1b2_3c4d, 0x4d3c_b2a1];

impl Capture {
    /// Opens a capture and reads its file header. The format is told by the magic number,
    /// not the file name: captures named `.pcapng` that are pcap files exist.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let unreadable = |source: io::Error| Error::Read {
            path: path.to_owned(),
            source,
        };
        let invalid = |what: String| unreadable(io::Error::new(io::ErrorKind::InvalidData, what));
        let mut file = File::open(path).map_err(unreadable)?;
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid("too short to be a capture".into())
            } else {
                unreadable(e)
            }
        })?;
        file.seek(SeekFrom::Start(0)).map_err(unreadable)?;
        let source = if magic == PCAPNG_MAGIC {
            Source::PcapNg(
                PcapNgReader::new(file).map_err(|e| invalid(format!("bad pcapng header: {e}")))?,
            )
        } else if PCAP_MAGICS.contains(&u32::from_be_bytes(magic)) {
            let reader =
                PcapReader::new(file).map_err(|e| invalid(format!("bad pcap header: {e}")))?;
            // The upper 16 bits of the pcap link-type field carry FCS flags, not the type.
            let linktype = u32::from(reader.header().datalink) & 0xffff;
            Source::Pcap { reader, linktype }
        } else {
            return Err(invalid(format!(
                "neither a pcap nor a pcapng capture (starts with {magic:02x?})"
            )));
        };
        Ok(Self {
            path: path.to_owned(),
            source,
            stopped: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn next_pcapng(reader: &mut PcapNgReader<File>) -> Option<Record> {
        loop {
            let (interface, data) = match reader.next_block()? {
                Err(e) => return Some(Record::Unreadable(e.to_string())),
                Ok(Block::EnhancedPacket(p)) => (p.interface_id, p.data.into_owned()),
                Ok(Block::Packet(p)) => (u32::from(p.interface_id), p.data.into_owned()),
                // A simple packet block belongs to the first interface (RFC draft §4.4).
                Ok(Block::SimplePacket(p)) => (0, p.data.into_owned()),
                Ok(_) => continue,
            };
            let Some(description) = reader.interfaces().get(interface as usize) else {
                return Some(Record::Unreadable(format!(
                    "packet of interface {interface}, which the capture never described"
                )));
            };
            return Some(Record::Packet {
                linktype: u32::from(description.linktype),
                data,
            });
        }
    }
}

impl Iterator for Capture {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.stopped {
            return None;
        }
        let record = match &mut self.source {
            Source::Pcap { reader, linktype } => match reader.next_raw_packet()? {
                Ok(packet) => Record::Packet {
                    linktype: *linktype,
                    data: packet.data.into_owned(),
                },
                Err(e) => Record::Unreadable(e.to_string()),
            },
            Source::PcapNg(reader) => Self::next_pcapng(reader)?,
        };
        if matches!(record, Record::Unreadable(_)) {
            self.stopped = true;
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header's first bytes, enough for the link layer to tell the version.
    const V4: &[u8] = &[0x45, 0, 0, 20];
    const V6: &[u8] = &[0x60, 0, 0, 0];

    fn ethertype(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[12], frame[13]])
    }

    fn sll(protocol: u16, payload: &[u8]) -> Vec<u8> {
        // Packet type 0 (to us), ARPHRD_ETHER, 6-byte address padded to 8, protocol.
        let mut h = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        h.extend_from_slice(&protocol.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn sll2(protocol: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = protocol.to_be_bytes().to_vec();
        // Reserved, interface index 2, ARPHRD_ETHER, packet type 0, address length 6, address.
        h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
        h.extend_from_slice(payload);
        h
    }

    #[test]
    fn ethernet_frames_pass_unchanged() {
        let frame = [[0u8; 12].as_slice(), &[0x81, 0x00, 0, 5, 0x08, 0x00], V4].concat();
        let out = to_ethernet(linktype::ETHERNET, &frame).unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, frame.as_slice());
        assert_eq!(
            to_ethernet(linktype::ETHERNET, &[0; 13]),
            Err(Skip::Truncated)
        );
    }

    #[test]
    fn cooked_captures_get_the_ethertype_of_their_protocol_field() {
        for (protocol, payload) in [(ETHERTYPE_IPV4, V4), (ETHERTYPE_IPV6, V6)] {
            for (linktype, data) in [
                (linktype::LINUX_SLL, sll(protocol, payload)),
                (linktype::LINUX_SLL2, sll2(protocol, payload)),
            ] {
                let frame = to_ethernet(linktype, &data).unwrap();
                assert_eq!(frame.len(), ETH_HLEN + payload.len(), "{linktype}");
                assert_eq!(ethertype(&frame), protocol, "{linktype}");
                assert_eq!(&frame[ETH_HLEN..], payload, "{linktype}");
            }
        }
    }

    #[test]
    fn a_vlan_tag_kept_by_a_cooked_capture_stays_in_front_of_the_ip_header() {
        let tagged = [[0u8, 5, 0x08, 0x00].as_slice(), V4].concat();
        let data = sll(ETHERTYPE_VLAN, &tagged);
        let frame = to_ethernet(linktype::LINUX_SLL, &data).unwrap();
        assert_eq!(ethertype(&frame), ETHERTYPE_VLAN);
        assert_eq!(&frame[ETH_HLEN..], tagged.as_slice());
    }

    #[test]
    fn cooked_captures_of_other_protocols_and_short_headers_are_skipped() {
        assert_eq!(
            to_ethernet(linktype::LINUX_SLL, &sll(0x0806, &[0; 28])),
            Err(Skip::NotIp)
        );
        assert_eq!(
            to_ethernet(linktype::LINUX_SLL2, &sll2(0x0806, &[0; 28])),
            Err(Skip::NotIp)
        );
        assert_eq!(
            to_ethernet(linktype::LINUX_SLL, &[0; 15]),
            Err(Skip::Truncated)
        );
        assert_eq!(
            to_ethernet(linktype::LINUX_SLL2, &[0; 19]),
            Err(Skip::Truncated)
        );
    }

    #[test]
    fn raw_ip_is_told_apart_by_its_version_nibble() {
        for linktype in [linktype::RAW, linktype::RAW_12, linktype::RAW_14] {
            let v4 = to_ethernet(linktype, V4).unwrap();
            assert_eq!(ethertype(&v4), ETHERTYPE_IPV4);
            assert_eq!(&v4[ETH_HLEN..], V4);
            assert_eq!(
                ethertype(&to_ethernet(linktype, V6).unwrap()),
                ETHERTYPE_IPV6
            );
            assert_eq!(to_ethernet(linktype, &[0x50, 0]), Err(Skip::NotIp));
            assert_eq!(to_ethernet(linktype, &[]), Err(Skip::Truncated));
        }
    }

    #[test]
    fn ipv4_and_ipv6_link_types_fix_the_ethertype() {
        assert_eq!(
            ethertype(&to_ethernet(linktype::IPV4, V4).unwrap()),
            ETHERTYPE_IPV4
        );
        assert_eq!(
            ethertype(&to_ethernet(linktype::IPV6, V6).unwrap()),
            ETHERTYPE_IPV6
        );
        assert_eq!(to_ethernet(linktype::IPV6, &[]), Err(Skip::Truncated));
    }

    #[test]
    fn loopback_captures_read_the_family_in_either_byte_order() {
        for (family, ethertype_expected) in [
            (AF_INET, ETHERTYPE_IPV4),
            (24, ETHERTYPE_IPV6),
            (28, ETHERTYPE_IPV6),
            (30, ETHERTYPE_IPV6),
        ] {
            for header in [family.to_le_bytes(), family.to_be_bytes()] {
                for linktype in [linktype::NULL, linktype::LOOP] {
                    let data = [header.as_slice(), V4].concat();
                    let frame = to_ethernet(linktype, &data).unwrap();
                    assert_eq!(ethertype(&frame), ethertype_expected);
                    assert_eq!(&frame[ETH_HLEN..], V4);
                }
            }
        }
        assert_eq!(
            to_ethernet(linktype::NULL, &[7, 0, 0, 0, 0x45]),
            Err(Skip::NotIp)
        );
        assert_eq!(
            to_ethernet(linktype::LOOP, &[0, 0, 0]),
            Err(Skip::Truncated)
        );
    }

    #[test]
    fn other_link_types_are_named_and_skipped() {
        // IEEE 802.11 frames carry IP behind headers the replay does not read.
        assert_eq!(to_ethernet(105, V4), Err(Skip::LinkType(105)));
        assert_eq!(linktype_name(9), "PPP (9)");
        assert_eq!(linktype_name(65000), "65000");
    }

    #[test]
    fn ppp_frames_with_and_without_hdlc_framing_carry_ip() {
        let mut framed = vec![0xff, 0x03, 0x00, 0x21];
        framed.extend_from_slice(V4);
        let mut bare = vec![0x00, 0x21];
        bare.extend_from_slice(V4);
        let mut compressed = vec![0x21];
        compressed.extend_from_slice(V4);
        for data in [framed, bare, compressed] {
            let frame = to_ethernet(linktype::PPP, &data).expect("PPP with IPv4");
            assert_eq!(&frame[12..14], &ETHERTYPE_IPV4.to_be_bytes());
            assert_eq!(&frame[ETH_HLEN..], V4);
        }
        // LCP (0xc021) is not IP.
        assert_eq!(
            to_ethernet(linktype::PPP, &[0xc0, 0x21, 1, 2]),
            Err(Skip::NotIp)
        );
        assert_eq!(linktype_name(65000), "65000");
    }

    /// Every record of the capture at `path`, which is then removed.
    fn read_and_remove(path: &Path) -> Vec<Record> {
        let records = Capture::open(path).unwrap().collect();
        std::fs::remove_file(path).unwrap();
        records
    }

    #[test]
    fn pcapng_packets_carry_the_link_type_of_their_interface() {
        use pcap_file::pcapng::{
            PcapNgWriter,
            blocks::{
                enhanced_packet::EnhancedPacketBlock,
                interface_description::InterfaceDescriptionBlock,
            },
        };
        let path =
            std::env::temp_dir().join(format!("sni-filter-capture-{}.pcapng", std::process::id()));
        let packet = |interface_id, data: &'static [u8]| EnhancedPacketBlock {
            interface_id,
            timestamp: std::time::Duration::ZERO,
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: Vec::new(),
        };
        {
            let mut w = PcapNgWriter::new(File::create(&path).unwrap()).unwrap();
            w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
                .unwrap();
            w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::LINUX_SLL2, 65535))
                .unwrap();
            w.write_pcapng_block(packet(1, V4)).unwrap();
            w.write_pcapng_block(packet(0, V6)).unwrap();
            w.write_pcapng_block(packet(0, V4)).unwrap();
        }
        let records = read_and_remove(&path);
        assert_eq!(records.len(), 3, "{records:?}");
        assert!(
            matches!(&records[0], Record::Packet { linktype: linktype::LINUX_SLL2, data } if data == V4),
            "{records:?}"
        );
        assert!(
            matches!(&records[1], Record::Packet { linktype: linktype::ETHERNET, data } if data == V6),
            "{records:?}"
        );
        assert!(
            matches!(&records[2], Record::Packet { linktype: linktype::ETHERNET, data } if data == V4),
            "{records:?}"
        );
    }

    #[test]
    fn a_cut_off_record_is_reported_and_ends_the_reading() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let path =
            std::env::temp_dir().join(format!("sni-filter-capture-{}.pcap", std::process::id()));
        {
            let header = PcapHeader {
                datalink: DataLink::RAW,
                ..PcapHeader::default()
            };
            let mut w = PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap();
            for data in [V4, V6] {
                w.write_packet(&PcapPacket::new(
                    std::time::Duration::ZERO,
                    data.len() as u32,
                    data,
                ))
                .unwrap();
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let records = read_and_remove(&path);
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(
            matches!(&records[0], Record::Packet { linktype: linktype::RAW, data } if data == V4),
            "{records:?}"
        );
        assert!(matches!(&records[1], Record::Unreadable(_)), "{records:?}");
    }

    #[test]
    fn files_that_are_not_captures_are_refused_with_their_name() {
        let path =
            std::env::temp_dir().join(format!("sni-filter-not-a-capture-{}", std::process::id()));
        std::fs::write(&path, b"GET / HTTP/1.1\r\n").unwrap();
        let err = Capture::open(&path).err().expect("refused").to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("neither a pcap nor a pcapng"), "{err}");
    }
}
