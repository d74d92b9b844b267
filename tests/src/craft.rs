//! A traffic crafter for the evasion suite: TCP sessions to the lab's server written frame
//! by frame on the client's interface (an `AF_PACKET` socket), so that every technique of
//! DPI-evasion tools can be put on the wire as they do it — segments split and reordered,
//! overlapping, fakes with a short TTL or a bad checksum, urgent data, IP fragments, IPv6
//! extension headers, data in the SYN — through the real gateway to a real TLS server.
//!
//! The client's kernel knows nothing of these sessions: [`Wire::open`] makes it drop the
//! resets it would send in answer to the server (iptables in the client namespace).

// Packet fields are built from lengths and offsets bounded by a frame's size.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::lab::Lab;
use crate::netns::run_in_netns;
use crate::run::{cmd, run};

mod packet;

pub use packet::client_hello_session;
use packet::{fragments, ip_packet, parse_from_server, server_hello_session};

const ETH_P_ALL: u16 = 0x0003;
const IPPROTO_TCP: u8 = 6;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_DSTOPTS: u8 = 60;
const IPV6_FRAGMENT: u8 = 44;

/// The client's end of the wire: a packet socket on the client's interface.
pub struct Wire {
    sock: OwnedFd,
    ifindex: i32,
    client_mac: [u8; 6],
    gateway_mac: [u8; 6],
    client: [IpAddr; 2],
    server: [IpAddr; 2],
}

/// TCP flag bits.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// One TCP segment as a technique wants it on the wire.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Offset of the payload from the first byte after the SYN (relative sequence number).
    pub rel_seq: u32,
    pub payload: Vec<u8>,
    pub flags: u8,
    pub urgent_pointer: u16,
    /// Raw TCP options (padded to 4 bytes by the builder).
    pub options: Vec<u8>,
    pub ttl: u8,
    pub bad_checksum: bool,
    /// Cut the IP packet into fragments whose first carries this many bytes of the IP
    /// payload (rounded up to 8); `None`: not fragmented.
    pub fragment_first: Option<usize>,
    /// IPv6 extension headers (Hop-by-Hop or Destination Options) in front of TCP.
    pub ipv6_ext: Vec<u8>,
}

impl Segment {
    pub fn data(rel_seq: u32, payload: &[u8]) -> Self {
        Self {
            rel_seq,
            payload: payload.to_vec(),
            flags: flags::PSH | flags::ACK,
            urgent_pointer: 0,
            options: Vec::new(),
            ttl: 64,
            bad_checksum: false,
            fragment_first: None,
            ipv6_ext: Vec::new(),
        }
    }
}

/// What came back from the server for one session.
#[derive(Clone, Debug, Default)]
pub struct Answer {
    /// A SYN-ACK arrived.
    pub syn_ack: bool,
    /// The server answered with a TLS ServerHello (or HelloRetryRequest) whose
    /// `legacy_session_id_echo` is this one: the hello it answered.
    pub server_hello_session: Option<Vec<u8>>,
    /// The server reset the connection.
    pub reset: bool,
    /// Payload bytes received from the server.
    pub bytes: usize,
}

/// A session's plan: a SYN (which may carry data), then segments.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub ipv6: bool,
    /// Payload of the SYN (TCP Fast Open); empty for none.
    pub syn_payload: Vec<u8>,
    /// TCP options of the SYN.
    pub syn_options: Vec<u8>,
    pub segments: Vec<Segment>,
    /// How long to wait for the server's answer after the last segment.
    pub wait: Duration,
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC {text}"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad MAC {text}"))
}

fn mac_of(ns: &str, ifname: &str) -> Result<[u8; 6]> {
    let out = run(&mut cmd(
        "ip",
        ["-n", ns, "-j", "link", "show", "dev", ifname],
    ))?;
    let start = out
        .find("\"address\":\"")
        .context("no address in ip -j link")?
        + 11;
    parse_mac(&out[start..start + 17])
}

impl Wire {
    /// Opens the packet socket in the client namespace and stops the client's kernel from
    /// resetting the crafted sessions.
    pub fn open(lab: &Lab) -> Result<Self> {
        for tool in ["iptables", "ip6tables"] {
            run(&mut cmd(
                "ip",
                [
                    "netns",
                    "exec",
                    lab.client_ns(),
                    tool,
                    "-A",
                    "OUTPUT",
                    "-p",
                    "tcp",
                    "--tcp-flags",
                    "RST",
                    "RST",
                    "-j",
                    "DROP",
                ],
            ))?;
        }
        let client_mac = mac_of(lab.client_ns(), lab.client_if())?;
        let gateway_mac = mac_of(lab.gateway_ns(), lab.gateway_client_if())?;
        let ifname = lab.client_if().to_owned();
        let (sock, ifindex) = run_in_netns(lab.client_ns(), move || -> Result<(OwnedFd, i32)> {
            // SAFETY: plain socket creation; the fd is owned at once.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            if fd < 0 {
                bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor of ours.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = std::ffi::CString::new(ifname.clone())?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            if ifindex == 0 {
                bail!("no interface {ifname}");
            }
            // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = ETH_P_ALL.to_be();
            addr.sll_ifindex = ifindex;
            // SAFETY: a valid sockaddr_ll of its own size.
            let rc = unsafe {
                libc::bind(
                    sock.as_raw_fd(),
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                bail!("bind AF_PACKET: {}", std::io::Error::last_os_error());
            }
            Ok((sock, ifindex))
        })??;
        Ok(Self {
            sock,
            ifindex,
            client_mac,
            gateway_mac,
            client: [lab.client_addr(false), lab.client_addr(true)],
            server: [lab.server_addr(false), lab.server_addr(true)],
        })
    }

    fn send_frame(&self, ip_packet: &[u8], ipv6: bool) -> Result<()> {
        let mut frame = Vec::with_capacity(ip_packet.len() + 14);
        frame.extend_from_slice(&self.gateway_mac);
        frame.extend_from_slice(&self.client_mac);
        frame.extend_from_slice(&(if ipv6 { 0x86ddu16 } else { 0x0800 }).to_be_bytes());
        frame.extend_from_slice(ip_packet);
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&self.gateway_mac);
        // SAFETY: a buffer of frame.len() bytes and a valid address.
        let rc = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            bail!("sendto: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame received, until `deadline`.
    fn recv_frame(&self, deadline: Instant) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: a buffer of buf.len() bytes.
            let n =
                unsafe { libc::recv(self.sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                buf.truncate(n as usize);
                return Some(buf);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs a session from `sport` to the server's port 443 and reports the answer.
    /// Several sessions may run at once on one wire only from distinct threads with
    /// distinct wires; this one reads every frame of the interface.
    pub fn session(&self, sport: u16, plan: &Session) -> Result<Answer> {
        let fam = usize::from(plan.ipv6);
        let (src, dst) = (self.client[fam], self.server[fam]);
        let isn: u32 = 0x1000_0000 ^ (u32::from(sport) << 8);
        let mut answer = Answer::default();
        let syn = Segment {
            rel_seq: 0,
            payload: plan.syn_payload.clone(),
            flags: flags::SYN,
            options: plan.syn_options.clone(),
            ..Segment::data(0, &[])
        };
        // The SYN takes the sequence number before the data's first byte.
        self.send_frame(
            &ip_packet(src, dst, sport, isn.wrapping_sub(1), 0, &syn)?,
            plan.ipv6,
        )?;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut server_isn = None;
        let mut stream = Vec::new();
        while let Some(frame) = self.recv_frame(deadline) {
            if let Some(seg) = parse_from_server(&frame, dst, src, sport) {
                if seg.flags & flags::RST != 0 {
                    answer.reset = true;
                    break;
                }
                if seg.flags & flags::SYN != 0 && seg.flags & flags::ACK != 0 {
                    server_isn = Some(seg.seq);
                    break;
                }
            }
        }
        let Some(server_isn) = server_isn else {
            return Ok(answer);
        };
        answer.syn_ack = true;
        let ack = server_isn.wrapping_add(1);
        let ack_seg = Segment {
            flags: flags::ACK,
            ..Segment::data(0, &[])
        };
        let data_seq = isn;
        // Data in the SYN is not taken without a Fast Open cookie: the plan's segments
        // carry it again, as a client does then.
        self.send_frame(
            &ip_packet(src, dst, sport, data_seq, ack, &ack_seg)?,
            plan.ipv6,
        )?;
        for seg in &plan.segments {
            let packet = ip_packet(
                src,
                dst,
                sport,
                data_seq.wrapping_add(seg.rel_seq),
                ack,
                seg,
            )?;
            match seg.fragment_first {
                None => self.send_frame(&packet, plan.ipv6)?,
                Some(first) => {
                    for fragment in fragments(&packet, plan.ipv6, first, u32::from(sport)) {
                        self.send_frame(&fragment, plan.ipv6)?;
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(if plan.segments.len() > 64 {
                100
            } else {
                1000
            }));
        }
        let deadline = Instant::now() + plan.wait;
        while let Some(frame) = self.recv_frame(deadline) {
            let Some(seg) = parse_from_server(&frame, dst, src, sport) else {
                continue;
            };
            if seg.flags & flags::RST != 0 {
                answer.reset = true;
                break;
            }
            if !seg.payload.is_empty() && seg.seq == ack.wrapping_add(stream.len() as u32) {
                stream.extend_from_slice(&seg.payload);
                answer.bytes = stream.len();
                if let Some(session) = server_hello_session(&stream) {
                    answer.server_hello_session = Some(session);
                    break;
                }
            }
        }
        // Leave no half-open connection behind on the server.
        let end = plan
            .segments
            .iter()
            .map(|s| s.rel_seq.wrapping_add(s.payload.len() as u32))
            .filter(|&end| (end as i32) >= 0)
            .max()
            .unwrap_or(0);
        self.reset(src, dst, sport, data_seq.wrapping_add(end), plan.ipv6)?;
        Ok(answer)
    }
}

impl Wire {
    fn reset(&self, src: IpAddr, dst: IpAddr, sport: u16, seq: u32, ipv6: bool) -> Result<()> {
        let rst = Segment {
            flags: flags::RST,
            ..Segment::data(0, &[])
        };
        self.send_frame(&ip_packet(src, dst, sport, seq, 0, &rst)?, ipv6)
    }
}

/// IPv6 extension header kinds a [`Segment`] can carry.
pub const EXT_HOP_BY_HOP: u8 = IPV6_HOPOPTS;
pub const EXT_DEST_OPTS: u8 = IPV6_DSTOPTS;
