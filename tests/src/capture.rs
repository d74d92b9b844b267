//! Captures in the lab: tcpdump on a node's interface, and the captures it writes (read and
//! written with `pcap-file`) cut down to one connection's `ClientHello` with stable addresses
//! and times, for fixtures.

use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use etherparse::{Ipv4Header, Ipv6Header, TcpHeader};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter},
    pcapng::{Block, PcapNgReader},
};

use crate::child::ChildGuard;
use crate::hello::CONTENT_HANDSHAKE;
use crate::lab::{Lab, Node};
use crate::scratch::ScratchDir;

/// How long tcpdump gets to open its interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// A pcapng file starts with a section header block, type 0x0a0d0d0a (a palindrome: the
/// same in either byte order).
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
pub const LINKTYPE_ETHERNET: u32 = 1;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;

/// tcpdump writing every packet of an interface of a lab node to a pcap file; stopped on
/// drop (SIGINT, so it flushes the file).
#[derive(Debug)]
pub struct Tcpdump {
    process: ChildGuard,
    path: PathBuf,
    dir: ScratchDir,
}

impl Tcpdump {
    /// Starts `tcpdump -i IFNAME -w PATH FILTER...` on `node` and returns once it captures.
    pub fn start(
        lab: &Lab,
        node: Node,
        ifname: &str,
        path: &Path,
        filter: &[&str],
    ) -> Result<Self> {
        let dir = ScratchDir::new("tcpdump")?;
        let log = dir.path().join("stderr");
        let mut cmd = lab.exec(node, "tcpdump");
        // --immediate-mode and -U: each packet is read and written as it comes (otherwise
        // the last second's packets may still sit in the kernel's buffer when tcpdump
        // stops); -Z root: the file stays writable where tcpdump would otherwise switch to
        // its own user.
        cmd.args([
            "-n",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-s",
            "0",
            "-i",
            ifname,
        ])
        .arg("-w")
        .arg(path)
        .args(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log)?);
        let mut process =
            ChildGuard::spawn(&mut cmd)?.graceful(libc::SIGINT, Duration::from_secs(3));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("listening on") {
                break;
            }
            if let Some(status) = process.try_wait()? {
                bail!("tcpdump exited ({status}) before capturing: {text}");
            }
            if Instant::now() > deadline {
                bail!("tcpdump did not start capturing within {START_TIMEOUT:?}: {text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            process,
            path: path.to_path_buf(),
            dir,
        })
    }

    /// Stops the capture (letting tcpdump flush) and returns the file's path.
    pub fn stop(self) -> Result<PathBuf> {
        let Self { process, path, dir } = self;
        // Packets still in flight reach the capture before it stops.
        thread::sleep(Duration::from_millis(200));
        process.stop()?;
        ensure!(
            path.exists(),
            "tcpdump wrote no {}: {}",
            path.display(),
            fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        );
        Ok(path)
    }
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcapRecord {
    pub ts_sec: u32,
    /// Microseconds.
    pub ts_usec: u32,
    pub data: Vec<u8>,
}

/// Reads a capture, classic pcap (either byte order, micro- or nanosecond times) or pcapng:
/// its link type (the first interface's, for pcapng) and frames.
pub fn read_pcap(bytes: &[u8]) -> Result<(u32, Vec<PcapRecord>)> {
    ensure!(bytes.len() >= 4, "shorter than a capture header");
    let record = |timestamp: Duration, data: &[u8]| PcapRecord {
        ts_sec: timestamp.as_secs() as u32,
        ts_usec: timestamp.subsec_micros(),
        data: data.to_vec(),
    };
    if bytes[..4] == PCAPNG_MAGIC {
        let mut reader = PcapNgReader::new(bytes).context("bad pcapng header")?;
        let mut records = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.context("bad pcapng block")? {
                Block::EnhancedPacket(p) => records.push(record(p.timestamp, &p.data)),
                Block::SimplePacket(p) => records.push(record(Duration::ZERO, &p.data)),
                _ => {}
            }
        }
        let linktype = reader
            .interfaces()
            .first()
            .map_or(LINKTYPE_ETHERNET, |i| u32::from(i.linktype));
        return Ok((linktype, records));
    }
    let mut reader = PcapReader::new(bytes).context("not a pcap or pcapng capture")?;
    let linktype = u32::from(reader.header().datalink);
    let mut records = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.context("truncated pcap record")?;
        records.push(record(packet.timestamp, &packet.data));
    }
    Ok((linktype, records))
}

/// A classic pcap file (little-endian, microseconds) of Ethernet frames.
pub fn write_pcap(records: &[PcapRecord]) -> Vec<u8> {
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("writing to memory");
    for r in records {
        let timestamp = Duration::new(u64::from(r.ts_sec), r.ts_usec * 1000);
        let len = r.data.len() as u32;
        writer
            .write_packet(&PcapPacket::new(timestamp, len, &r.data))
            .expect("writing to memory");
    }
    writer.into_writer()
}

/// The parts of an Ethernet/IP/TCP frame a capture cut needs.
#[derive(Clone, Debug)]
pub struct TcpFrame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub tcp: TcpHeader,
    pub payload: Vec<u8>,
}

/// Reads an untagged Ethernet frame carrying IPv4 or IPv6 (no extension headers) and TCP.
pub fn tcp_frame(frame: &[u8]) -> Option<TcpFrame> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(14..)?;
    let (src, dst, transport): (IpAddr, IpAddr, &[u8]) = match ethertype {
        ETHERTYPE_IPV4 => {
            let (h, rest) = Ipv4Header::from_slice(ip).ok()?;
            if h.protocol.0 != IPPROTO_TCP {
                return None;
            }
            let len = usize::from(h.total_len).checked_sub(h.header_len())?;
            (h.source.into(), h.destination.into(), rest.get(..len)?)
        }
        ETHERTYPE_IPV6 => {
            let (h, rest) = Ipv6Header::from_slice(ip).ok()?;
            if h.next_header.0 != IPPROTO_TCP {
                return None;
            }
            (
                h.source.into(),
                h.destination.into(),
                rest.get(..usize::from(h.payload_length))?,
            )
        }
        _ => return None,
    };
    let (tcp, payload) = TcpHeader::from_slice(transport).ok()?;
    Some(TcpFrame {
        src,
        dst,
        tcp,
        payload: payload.to_vec(),
    })
}

/// The frames of the first TCP connection to `port` whose client sent a `ClientHello`: both
/// directions, from the client's SYN up to the segment that completes the hello. Assumes
/// the capture saw the client's segments in order, as the gateway does in the lab.
pub fn client_hello_connection(records: &[PcapRecord], port: u16) -> Result<Vec<PcapRecord>> {
    let frames: Vec<(usize, TcpFrame)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| tcp_frame(&r.data).map(|f| (i, f)))
        .collect();
    let syns = frames
        .iter()
        .filter(|(_, f)| f.tcp.syn && !f.tcp.ack && f.tcp.destination_port == port);
    for (first, syn) in syns {
        let client = (syn.src, syn.tcp.source_port);
        let server = (syn.dst, port);
        let of_flow = |f: &TcpFrame| {
            let (s, d) = ((f.src, f.tcp.source_port), (f.dst, f.tcp.destination_port));
            (s, d) == (client, server) || (s, d) == (server, client)
        };
        let mut hello = Vec::new();
        let mut kept = Vec::new();
        for (i, f) in frames.iter().filter(|(i, f)| i >= first && of_flow(f)) {
            kept.push(records[*i].clone());
            if (f.src, f.tcp.source_port) == client {
                hello.extend_from_slice(&f.payload);
                match hello_complete(&hello) {
                    Some(true) => return Ok(kept),
                    Some(false) => {}
                    // This connection does not start with a ClientHello: try the next.
                    None => break,
                }
            }
        }
    }
    bail!("no connection to port {port} with a complete ClientHello in the capture")
}

/// Whether `stream` (a client's first bytes) holds a complete `ClientHello`: `None` if it
/// does not start like one.
fn hello_complete(stream: &[u8]) -> Option<bool> {
    if stream.first().is_some_and(|&b| b != CONTENT_HANDSHAKE) {
        return None;
    }
    let mut handshake = Vec::new();
    let mut at = 0;
    while let Some(header) = stream.get(at..at + 5) {
        if header[0] != CONTENT_HANDSHAKE {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let end = (at + 5 + len).min(stream.len());
        handshake.extend_from_slice(&stream[at + 5..end]);
        at += 5 + len;
    }
    match handshake.first() {
        None => return Some(false),
        Some(&1) => {}
        Some(_) => return None,
    }
    let need = handshake
        .get(1..4)
        .map(|l| 4 + (usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2])));
    Some(need.is_some_and(|need| handshake.len() >= need))
}

/// Stable stand-ins for a capture's client and server.
#[derive(Clone, Copy, Debug)]
pub struct Stand {
    pub client_mac: [u8; 6],
    pub server_mac: [u8; 6],
    pub client_v4: Ipv4Addr,
    pub server_v4: Ipv4Addr,
    pub client_v6: Ipv6Addr,
    pub server_v6: Ipv6Addr,
    pub client_port: u16,
    /// Seconds since the epoch of the first frame; the others keep their offsets.
    pub start: u32,
}

impl Default for Stand {
    /// Documentation addresses (RFC 5737, RFC 3849), locally administered MACs, port 50000,
    /// 2025-01-01T00:00:00Z.
    fn default() -> Self {
        Self {
            client_mac: [0x02, 0, 0, 0, 0, 0x02],
            server_mac: [0x02, 0, 0, 0, 0, 0x01],
            client_v4: Ipv4Addr::new(192, 0, 2, 2),
            server_v4: Ipv4Addr::new(198, 51, 100, 2),
            client_v6: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
            server_v6: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2),
            client_port: 50_000,
            start: 1_735_689_600,
        }
    }
}

/// Rewrites one connection's frames (as [`client_hello_connection`] returns them) to the
/// stand-ins: addresses, MACs, the client's port and times, with correct IP and TCP
/// checksums (frames a local stack sent over veth carry partial ones).
pub fn restage(records: &[PcapRecord], stand: &Stand) -> Result<Vec<PcapRecord>> {
    let first = records.first().context("no frames")?;
    let syn = tcp_frame(&first.data).context("the first frame is not TCP")?;
    let client = (syn.src, syn.tcp.source_port);
    let t0 = u64::from(first.ts_sec) * 1_000_000 + u64::from(first.ts_usec);
    records
        .iter()
        .map(|r| {
            let f = tcp_frame(&r.data).context("a frame that is not TCP")?;
            let from_client = (f.src, f.tcp.source_port) == client;
            let mut tcp = f.tcp.clone();
            if from_client {
                tcp.source_port = stand.client_port;
            } else {
                tcp.destination_port = stand.client_port;
            }
            let (src_mac, dst_mac) = if from_client {
                (stand.client_mac, stand.server_mac)
            } else {
                (stand.server_mac, stand.client_mac)
            };
            let mut data = Vec::with_capacity(r.data.len());
            data.extend_from_slice(&dst_mac);
            data.extend_from_slice(&src_mac);
            data.extend_from_slice(&r.data[12..14]);
            match (f.src, f.dst) {
                (IpAddr::V4(_), IpAddr::V4(_)) => {
                    let (mut ip, _) = Ipv4Header::from_slice(&r.data[14..])?;
                    let (c, s) = (stand.client_v4.octets(), stand.server_v4.octets());
                    (ip.source, ip.destination) = if from_client { (c, s) } else { (s, c) };
                    ip.header_checksum = ip.calc_header_checksum();
                    tcp.checksum = tcp.calc_checksum_ipv4(&ip, &f.payload)?;
                    ip.write(&mut data)?;
                }
                (IpAddr::V6(_), IpAddr::V6(_)) => {
                    let (mut ip, _) = Ipv6Header::from_slice(&r.data[14..])?;
                    let (c, s) = (stand.client_v6.octets(), stand.server_v6.octets());
                    (ip.source, ip.destination) = if from_client { (c, s) } else { (s, c) };
                    tcp.checksum = tcp.calc_checksum_ipv6(&ip, &f.payload)?;
                    ip.write(&mut data)?;
                }
                _ => bail!("a frame mixes IPv4 and IPv6"),
            }
            tcp.write(&mut data)?;
            data.extend_from_slice(&f.payload);
            let offset =
                (u64::from(r.ts_sec) * 1_000_000 + u64::from(r.ts_usec)).saturating_sub(t0);
            Ok(PcapRecord {
                ts_sec: stand.start + (offset / 1_000_000) as u32,
                ts_usec: (offset % 1_000_000) as u32,
                data,
            })
        })
        .collect()
}

/// The client's TCP payloads of a restaged capture, segment by segment.
pub fn client_segments(records: &[PcapRecord]) -> Vec<Vec<u8>> {
    let stand = Stand::default();
    records
        .iter()
        .filter_map(|r| tcp_frame(&r.data))
        .filter(|f| f.tcp.source_port == stand.client_port && !f.payload.is_empty())
        .map(|f| f.payload)
        .collect()
}

/// Which of the segments (1, 2, ...) `needle` starts in, read as one stream.
pub fn segment_of(segments: &[Vec<u8>], needle: &[u8]) -> Option<usize> {
    let stream = segments.concat();
    let at = stream.windows(needle.len()).position(|w| w == needle)?;
    let mut end = 0;
    segments
        .iter()
        .position(|s| {
            end += s.len();
            at < end
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::{PcapRecord, hello_complete, read_pcap, write_pcap};
    use crate::hello::{ClientHelloBuilder, tls_records};

    #[test]
    fn pcap_round_trips() {
        let records = vec![
            PcapRecord {
                ts_sec: 1,
                ts_usec: 2,
                data: vec![1, 2, 3],
            },
            PcapRecord {
                ts_sec: 3,
                ts_usec: 4,
                data: vec![],
            },
        ];
        let (linktype, back) = read_pcap(&write_pcap(&records)).unwrap();
        assert_eq!(linktype, 1);
        assert_eq!(back, records);
    }

    #[test]
    fn pcapng_is_read_too() {
        use pcap_file::{
            DataLink,
            pcapng::{
                PcapNgWriter,
                blocks::{
                    enhanced_packet::EnhancedPacketBlock,
                    interface_description::InterfaceDescriptionBlock,
                },
            },
        };
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
            .unwrap();
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: std::time::Duration::new(5, 6000),
            original_len: 3,
            data: vec![1, 2, 3].into(),
            options: vec![],
        };
        w.write_pcapng_block(packet).unwrap();
        let (linktype, records) = read_pcap(&w.into_inner()).unwrap();
        assert_eq!(linktype, 1);
        assert_eq!(
            records,
            vec![PcapRecord {
                ts_sec: 5,
                ts_usec: 6,
                data: vec![1, 2, 3],
            }]
        );
    }

    #[test]
    fn the_fixtures_are_written_back_byte_for_byte() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pcap") {
                let bytes = std::fs::read(&path).unwrap();
                let (_, records) = read_pcap(&bytes).unwrap();
                assert_eq!(write_pcap(&records), bytes, "{}", path.display());
            }
        }
    }

    #[test]
    fn a_hello_is_complete_only_with_its_last_byte() {
        let stream = tls_records(&ClientHelloBuilder::chrome("a.example").build(), 700);
        assert_eq!(hello_complete(&stream), Some(true));
        for cut in [0, 3, 5, 100, 800, stream.len() - 1] {
            assert_eq!(hello_complete(&stream[..cut]), Some(false), "cut at {cut}");
        }
        assert_eq!(hello_complete(b"GET / HTTP/1.1\r\n"), None);
    }
}
