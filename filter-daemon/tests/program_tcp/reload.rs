//! The program as the daemon loads and reloads it: the maps userspace asks for and the
//! verifier's budget; rules, ports and flow hints rewritten under a loaded program, and
//! a reload raced by packets that must never see a mix of two rule sets.

use std::{path::Path, sync::atomic::Ordering};

use filter_common::{REASON_COUNT, Reason, names};
use sni_filter::{
    config::Config,
    filter::{Filter, VERIFIED_INSNS_BOUND},
    rules::RuleSet,
};
use sni_filter_lab::hello::{IpPair, TcpFlags};

use super::common::program::{XDP_DROP, XDP_PASS};
use super::{
    RULES, chrome_name_last, counters, filter, hello_frame, hello_frame_on, table_filter, tcp,
};

#[test]
fn every_map_userspace_uses_is_in_the_object() {
    let f = filter(RULES);
    for name in names::MAPS {
        assert!(
            f.has_map(name),
            "map {name} missing from the compiled object"
        );
    }
    assert_eq!(counters(&f).len(), REASON_COUNT as usize);
    // The verifier's work for each program, against this project's bound of a fifth of its
    // 1M limit: the work moves between kernels and builds, so a program near the limit on
    // one machine is refused on another.
    let figures = f.verification();
    assert_eq!(figures.len(), 2, "both programs were loaded: {figures:?}");
    for v in figures {
        let n = v
            .instructions
            .expect("the kernel reports the verifier's processed instructions");
        println!(
            "verifier processed {n} instructions of {} in {:.3} s",
            v.program,
            v.took.as_secs_f64()
        );
        assert!(
            n <= VERIFIED_INSNS_BOUND,
            "{} takes {n} of the verifier's instructions, above the bound of {VERIFIED_INSNS_BOUND}",
            v.program
        );
    }
}

#[test]
fn reinstalling_rules_switches_verdicts() {
    let mut f = filter(RULES);
    assert_eq!(
        f.run_frame(&hello_frame("www.tiktok.com")).unwrap(),
        XDP_DROP
    );
    let config = Config::parse(
        Path::new("/nonexistent/other.toml"),
        "[apps.other]\naction = \"drop\"\ndomains = [\"example.org\"]\n",
    )
    .unwrap();
    f.install(&RuleSet::compile(&config).unwrap()).unwrap();
    assert_eq!(
        f.run_frame(&hello_frame("www.tiktok.com")).unwrap(),
        XDP_PASS
    );
    assert_eq!(
        f.run_frame(&hello_frame("www.example.org")).unwrap(),
        XDP_DROP
    );
}

#[test]
fn reloads_between_port_sets_inspect_the_ports_in_force() {
    // The daemon writes each port set into the side of the bitmap not in force and then
    // switches: every reload must inspect the new set, never the one before it.
    let config = |ports: &str| {
        Config::parse(
            Path::new("/nonexistent/ports.toml"),
            &format!("[filter]\ninspected_ports = [{ports}]\n{RULES}"),
        )
        .expect("ports config")
    };
    let first = config("443");
    let mut f = Filter::load_for(&first).expect("the program loads (run as root)");
    f.install(&RuleSet::compile(&first).unwrap()).unwrap();
    let hello_to = |port: u16| {
        let mut seg = tcp(IpPair::v4_example());
        seg.dst_port = port;
        hello_frame_on(&seg, "www.tiktok.com")
    };
    for round in 0..3 {
        for (ports, inspected, not_inspected) in [("8443", 8443, 443), ("443", 443, 8443)] {
            f.set_policy(&config(ports)).unwrap();
            let before = counters(&f);
            assert_eq!(
                f.run_frame(&hello_to(inspected)).unwrap(),
                XDP_DROP,
                "reload {round}, ports [{ports}]: a hello to {inspected} is judged"
            );
            assert_eq!(
                f.run_frame(&hello_to(not_inspected)).unwrap(),
                XDP_PASS,
                "reload {round}, ports [{ports}]: {not_inspected} is not inspected"
            );
            let after = counters(&f);
            let moved = |r: Reason| after[r as usize].packets - before[r as usize].packets;
            assert_eq!(moved(Reason::HelloBlocked), 1, "reload {round}, [{ports}]");
            assert_eq!(
                moved(Reason::TcpPortNotInspected),
                1,
                "reload {round}, [{ports}]"
            );
        }
    }
}

#[test]
fn flow_state_keeps_its_hint_bits_across_rebuilds() {
    // The bitmap in front of the flow tables is rebuilt by the daemon; a flow with a blocked
    // verdict, a hello being read or an opening must keep its bit, or its packets would
    // skip the lookups.
    let mut f = table_filter(true);
    let v4 = IpPair::v4_example();
    let blocked = tcp(v4);
    assert_eq!(
        f.run_frame(&hello_frame_on(&blocked, "www.tiktok.com"))
            .unwrap(),
        XDP_DROP
    );
    let hello = chrome_name_last("www.tiktok.com");
    let reading = tcp(v4);
    let split = reading.frames_split(&hello, &[300]);
    assert_eq!(f.run_frame(&split[0]).unwrap(), XDP_PASS);
    let mut opening = tcp(v4);
    opening.flags = TcpFlags::SYN;
    assert_eq!(f.run_frame(&opening.frame(&[])).unwrap(), XDP_PASS);
    for _ in 0..3 {
        f.rebuild_hints().expect("rebuild");
    }
    let before = counters(&f);
    assert_eq!(f.run_frame(&blocked.frame(b"more data")).unwrap(), XDP_DROP);
    assert_eq!(f.run_frame(&split[1]).unwrap(), XDP_DROP);
    // The opening connection's first data, one byte ahead of where its SYN said: the
    // program knows the connection, so this is out of order, not plain data.
    let mut ahead = opening.clone();
    ahead.flags = TcpFlags::PSH_ACK;
    ahead.seq = opening.seq.wrapping_add(2);
    assert_eq!(f.run_frame(&ahead.frame(b"xx")).unwrap(), XDP_DROP);
    let after = counters(&f);
    for (reason, n) in [
        (Reason::BlockedFlow, 1),
        (Reason::HelloBlocked, 1),
        (Reason::UninspectableOutOfOrder, 1),
    ] {
        assert_eq!(
            after[reason as usize].packets - before[reason as usize].packets,
            n,
            "{}",
            reason.name()
        );
    }
}

/// `BPF_PROG_TEST_RUN` on a program fd, for a thread that runs packets while another reloads.
fn raw_test_run(prog_fd: std::os::fd::RawFd, frame: &[u8]) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog_fd).expect("a valid fd"),
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat: 1,
        ..TestAttr::default()
    };
    // SAFETY: the attribute points at `frame`, alive for the call; no output buffers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            std::mem::size_of::<TestAttr>(),
        )
    };
    assert_eq!(
        rc,
        0,
        "BPF_PROG_TEST_RUN: {}",
        std::io::Error::last_os_error()
    );
    attr.retval
}

#[test]
fn a_reload_never_shows_a_mix_of_two_rule_sets() {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    use std::sync::atomic::AtomicBool;
    // Both sets drop x.example, through apps in different places: set A through its first
    // app, set B through its second, whose first app only monitors. New rules with old apps
    // find a disabled app (pass); old rules with new apps find the monitor (pass, counted
    // hello_monitored). Only a clean switch drops every time.
    let text_a = "[apps.one]\naction = \"drop\"\ndomains = [\"x.example\"]\n";
    let text_b = "[apps.one]\naction = \"monitor\"\ndomains = [\"unused.example\"]\n[apps.two]\naction = \"drop\"\ndomains = [\"x.example\"]\n";
    let parse = |text: &str| {
        let config = Config::parse(Path::new("/nonexistent/mix.toml"), text).unwrap();
        let set = RuleSet::compile(&config).unwrap();
        (config, set)
    };
    let (config_a, set_a) = parse(text_a);
    let (config_b, set_b) = parse(text_b);
    let mut f = Filter::load_for(&config_a).unwrap();
    f.apply_config(&config_a, &set_a).unwrap();
    let fd = f.program().fd().unwrap().try_clone().unwrap();
    let stop = AtomicBool::new(false);
    let (runs, wrong) = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            let (mut runs, mut wrong) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                // A fresh flow each time: a blocked verdict would otherwise answer alone.
                let action = raw_test_run(fd.as_fd().as_raw_fd(), &hello_frame("x.example"));
                if action != XDP_DROP {
                    wrong.push(action);
                }
                runs += 1;
            }
            (runs, wrong)
        });
        for round in 0..40 {
            let (config, set) = if round % 2 == 0 {
                (&config_b, &set_b)
            } else {
                (&config_a, &set_a)
            };
            f.apply_config(config, set).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        runner.join().unwrap()
    });
    println!("{runs} packets judged during 40 reloads");
    assert!(runs > 100, "too few packets ran during the reloads: {runs}");
    assert!(
        wrong.is_empty(),
        "{} of {runs} packets saw a mix of the two sets: {wrong:?}",
        wrong.len()
    );
    assert_eq!(counters(&f)[Reason::HelloMonitored as usize].packets, 0);
}
