//! How the program reads hellos beyond the table: the fast path against the walker on
//! whole hellos, a hello cut at every byte, one-byte records, multi-buffer jumbo frames,
//! IPv4 options, a 16 KiB hello, and a blocked flow forgotten after its idle timeout.

use filter_common::Note;
use sni_filter::filter::Filter;
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, SniPosition, tls_records};

use super::common::program::{XDP_DROP, XDP_PASS};
use super::frames::with_ipv4_options;
use super::{
    RULES, blocked_flow, chrome_name_last, counters, filter, hello_frame, table_filter, tcp,
};

#[test]
fn whole_hellos_take_the_fast_path_with_the_walkers_verdicts() {
    // Names blocked, by wildcard, monitored, disabled and allowed; ECH before and after the
    // name; no name at all. Each hello whole in one segment, through both paths.
    let mut hellos = Vec::new();
    for name in [
        "www.tiktok.com",
        "p16-tiktok-va.ibyteimg.com",
        "a.watched.example",
        "disabled.example",
        "www.example.org",
    ] {
        for (ech, position) in [
            (false, SniPosition::First),
            (true, SniPosition::First),
            (true, SniPosition::Last),
        ] {
            hellos.push(
                ClientHelloBuilder::chrome(name)
                    .post_quantum(false)
                    .ech(ech)
                    .sni_position(position)
                    .build(),
            );
        }
        hellos.push(ClientHelloBuilder::minimal(name).build());
    }
    hellos.push(ClientHelloBuilder::minimal("x").no_server_name().build());
    let mut fast = table_filter(true);
    let mut walker = table_filter(true);
    walker.set_walker_only(true).unwrap();
    let read_fast = |f: &Filter| f.notes().unwrap()[Note::HelloReadFast as usize];
    for (i, hello) in hellos.iter().enumerate() {
        let frame = tcp(IpPair::v6_example()).frame(&tls_records(hello, 16384));
        let fast_before = read_fast(&fast);
        let mut seen = Vec::new();
        for f in [&mut fast, &mut walker] {
            let before = counters(f);
            let action = f.run_frame(&frame).unwrap();
            let after = counters(f);
            let moved: Vec<(usize, u64)> = (0..after.len())
                .map(|r| (r, after[r].packets - before[r].packets))
                .filter(|(_, d)| *d != 0)
                .collect();
            let events: Vec<(u8, u8, u16, u8, Vec<u8>)> = f
                .drain_events()
                .unwrap()
                .iter()
                .map(|e| {
                    let name = e.sni[..usize::from(e.sni_len)].to_vec();
                    (e.reason, e.action, e.app, e.flags, name)
                })
                .collect();
            seen.push((action, moved, events));
        }
        assert_eq!(seen[0], seen[1], "hello {i}: fast path, then walker");
        assert_eq!(
            read_fast(&fast) - fast_before,
            1,
            "hello {i} was read by the fast path"
        );
    }
    assert_eq!(read_fast(&walker), 0, "walker only reads nothing fast");
}

#[test]
fn a_hello_split_at_every_byte_is_blocked() {
    for walker_only in [false, true] {
        let mut f = table_filter(true);
        f.set_walker_only(walker_only).unwrap();
        split_at_every_byte(&f, walker_only);
    }
}

/// Every cut of a Chrome-like hello into two segments, through `f`.
fn split_at_every_byte(f: &Filter, walker_only: bool) {
    let hello = chrome_name_last("www.tiktok.com");
    let name_at =
        sni_filter_lab::hello::find(&hello, b"www.tiktok.com").expect("name in the hello");
    let mut wrong = Vec::new();
    for cut in 1..hello.len() {
        let frames = tcp(IpPair::v4_example()).frames_split(&hello, &[cut]);
        let first = f.run_frame(&frames[0]).unwrap();
        let second = f.run_frame(&frames[1]).unwrap();
        // The first part passes unless it already holds the whole name.
        let first_ok = if cut >= name_at + "www.tiktok.com".len() {
            first == XDP_DROP
        } else {
            first == XDP_PASS
        };
        if !first_ok || second != XDP_DROP {
            wrong.push(format!("cut {cut}: first {first}, second {second}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cuts of {} went wrong (walker only: {walker_only}):\n{}",
        wrong.len(),
        hello.len() - 1,
        wrong.join("\n")
    );
}

#[test]
fn a_hello_in_one_byte_records_over_several_segments_is_blocked() {
    let f = table_filter(true);
    let hello = tls_records(&ClientHelloBuilder::minimal("www.tiktok.com").build(), 1);
    let frames = tcp(IpPair::v4_example()).frames(&hello, 700);
    let actions: Vec<u32> = frames.iter().map(|fr| f.run_frame(fr).unwrap()).collect();
    assert_eq!(actions.last(), Some(&XDP_DROP), "{actions:?}");
}

#[test]
fn a_hello_in_a_multi_buffer_jumbo_frame_is_read() {
    // Above a page, BPF_PROG_TEST_RUN hands a frags-capable program a multi-buffer frame, as
    // a driver does with a jumbo MTU: the name sits in a fragment, past the linear part.
    let f = table_filter(true);
    let hello = ClientHelloBuilder::chrome("www.tiktok.com")
        .sni_position(SniPosition::Last)
        .pad_to(7000)
        .build();
    let frame = tcp(IpPair::v4_example()).frame(&tls_records(&hello, 16384));
    assert!(frame.len() > 4096 + 1000, "frame of {} bytes", frame.len());
    assert_eq!(f.run_frame(&frame).unwrap(), XDP_DROP);
    let allowed = ClientHelloBuilder::chrome("www.example.org")
        .sni_position(SniPosition::Last)
        .pad_to(7000)
        .build();
    assert_eq!(
        f.run_frame(&tcp(IpPair::v4_example()).frame(&tls_records(&allowed, 16384)))
            .unwrap(),
        XDP_PASS
    );
}

#[test]
fn ipv4_options_a_16_kib_hello_and_the_idle_timeout() {
    let f = filter(&format!(
        "[filter]\nuninspectable = \"drop\"\nflow_idle_secs = 1\n{RULES}"
    ));
    // IPv4 options (IHL up to 15 words) in front of TCP.
    for words in [1, 10] {
        let frame = with_ipv4_options(&hello_frame("www.tiktok.com"), words);
        etherparse::SlicedPacket::from_ethernet(&frame).expect("the frame with options parses");
        assert_eq!(
            f.run_frame(&frame).unwrap(),
            XDP_DROP,
            "{words} option words"
        );
    }
    // A hello padded to 16 KiB, in two records, over 12 segments, the name last.
    let big = tls_records(
        &ClientHelloBuilder::chrome("www.tiktok.com")
            .sni_position(SniPosition::Last)
            .pad_to(16 * 1024)
            .build(),
        16384,
    );
    assert!(big.len() > 16 * 1024);
    let frames = tcp(IpPair::v4_example()).frames(&big, 1448);
    assert!(frames.len() >= 12, "{} segments", frames.len());
    let actions: Vec<u32> = frames.iter().map(|fr| f.run_frame(fr).unwrap()).collect();
    assert_eq!(actions.last(), Some(&XDP_DROP), "{actions:?}");
    assert!(
        actions[..actions.len() - 1].iter().all(|&a| a == XDP_PASS),
        "{actions:?}"
    );
    // A blocked flow silent longer than flow_idle_secs is forgotten: its data passes again.
    let (_, later) = blocked_flow(&f);
    assert_eq!(f.run_frame(&later.frame(b"data")).unwrap(), XDP_DROP);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        f.run_frame(&later.frame(b"data")).unwrap(),
        XDP_PASS,
        "the verdict outlived its idle timeout"
    );
}
