//! The XDP program of sni-filter: at ingress of a LAN-facing interface it reads the server
//! name of each TLS ClientHello and drops the packets of banned names; all else passes.
#![no_std]
#![no_main]

mod counters;
mod headers;
mod rules;
mod tls;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use filter_common::Reason;

use crate::headers::{Cursor, L4};

#[xdp]
pub fn sni_filter(ctx: XdpContext) -> u32 {
    let reason = match try_sni_filter(&ctx) {
        Ok(reason) | Err(reason) => reason,
    };
    counters::record(&ctx, reason)
}

/// Parses down to the TCP payload and judges it. `Err` carries the reason a packet could
/// not be parsed; both arms end in the one exit above.
#[inline(always)]
fn try_sni_filter(ctx: &XdpContext) -> Result<Reason, Reason> {
    let mut cur = Cursor::new();
    let l4 = match headers::parse_ethernet(ctx, &mut cur)? {
        headers::ETH_P_IP => headers::parse_ipv4(ctx, &mut cur)?,
        headers::ETH_P_IPV6 => headers::parse_ipv6(ctx, &mut cur)?,
        _ => return Ok(Reason::NotIp),
    };
    match l4 {
        L4::Tcp { end } => {
            let payload = headers::parse_tcp(ctx, &mut cur, end)?;
            if payload.len == 0 {
                return Ok(Reason::TcpNoPayload);
            }
            Ok(tls::judge_payload(ctx, payload.offset, payload.len))
        }
        L4::Udp => Ok(Reason::Udp),
        L4::Other => Ok(Reason::OtherProtocol),
        L4::Fragment => Ok(Reason::IpFragment),
    }
}

/// Maps the reason to the XDP action.
#[inline(always)]
fn action_for(reason: Reason) -> u32 {
    if reason.drops() {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

// A reachable panic would be an infinite loop, which the verifier refuses: so a panic path
// fails at load time instead of shipping.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
