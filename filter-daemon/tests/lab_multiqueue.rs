//! Group: end-to-end lab tests (network namespaces, real servers, clients and daemons; see
//! `filter-daemon/tests/README.md`).
//!
//! One flow whose `ClientHello` segments arrive on different receive queues, and so are
//! judged by the XDP program on different CPUs: the reassembly state the program keeps per
//! flow must be shared, or the name split over the two segments is never read. Needs root
//! and at least two CPUs.
//!
//! How the segments land on different queues: the client — gateway veth pair has 4 queues a
//! side, and a veth delivers a frame sent on its transmit queue N to its peer's receive
//! queue N (where the XDP program runs in that queue's NAPI context). Transmit Packet
//! Steering on the client's end maps CPU A to tx-1 and CPU B to tx-2, and TCP picks the
//! queue anew for a write when none of the socket's earlier data is still in the stack. The
//! client is Python's `ssl` (OpenSSL) driving the handshake through memory BIOs, so that it
//! can write its real `ClientHello` in two parts, cut inside the server name: the first
//! while pinned to CPU A, the second while pinned to CPU B. Between the writes the test
//! reads the gateway veth's per-queue XDP counters (`ethtool -S`: `rx_queue_N_xdp_packets`,
//! `_bytes`) and checks that each part really arrived on its queue.

mod common;

#[allow(clippy::wildcard_imports)]
use common::{lab::*, *};
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sni_filter_lab::{ChildGuard, Lab, LabOptions, Node, TlsServer, python3, response_body};

const QUEUES: u16 = 4;
/// The client's transmit queues (= the gateway's receive queues) the two parts go to.
const QUEUE_A: u16 = 1;
const QUEUE_B: u16 = 2;
/// How long the client waits for the server once the hello is sent.
const PATIENCE: Duration = Duration::from_secs(2);

/// Python's `ssl` with the hello written in two parts from two CPUs: `HOST ADDR CAFILE
/// TIMEOUT CPU_A CPU_B`. Prints `ready HELLO_LEN SPLIT`, then waits for a line on stdin
/// before each part (`sent1`, `sent2`), then finishes the handshake and fetches `/`.
const SPLIT_CLIENT: &str = r#"
import os, socket, ssl, sys
host, addr, cafile = sys.argv[1], sys.argv[2], sys.argv[3]
timeout, cpu_a, cpu_b = float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname=host)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
hello = outgoing.read()
split = hello.find(host.encode()) + len(host) // 2
sock = socket.create_connection((addr, 443), timeout=timeout)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
print("ready", len(hello), split, flush=True)

def step(cpu, data, label):
    sys.stdin.readline()
    os.sched_setaffinity(0, {cpu})
    sock.sendall(data)
    print(label, flush=True)

def pump():
    if data := outgoing.read():
        sock.sendall(data)
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("closed by the server")
    incoming.write(chunk)

try:
    step(cpu_a, hello[:split], "sent1")
    step(cpu_b, hello[split:], "sent2")
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    names = [v for k, v in tls.getpeercert()["subjectAltName"] if k == "DNS"]
    print("verified", tls.version(), names, flush=True)
    tls.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    response = b""
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:
                break
            response += chunk
        except ssl.SSLWantReadError:
            try:
                pump()
            except ConnectionError:
                break
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
    sys.stdout.write(response.decode(errors="replace"))
except Exception as e:
    print(f"error: {type(e).__name__}: {e}", flush=True)
    sys.exit(3)
"#;

/// The gateway veth's XDP counters per receive queue: queue -> (packets, bytes).
fn queue_counters(lab: &Lab) -> BTreeMap<u16, (u64, u64)> {
    let out = lab
        .exec(Node::Gateway, "ethtool")
        .args(["-S", lab.gateway_client_if()])
        .output()
        .expect("ethtool runs");
    let mut counters: BTreeMap<u16, (u64, u64)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some(rest) = name.strip_prefix("rx_queue_") else {
            continue;
        };
        let Some((queue, what)) = rest.split_once('_') else {
            continue;
        };
        let (Ok(queue), Ok(value)) = (queue.parse(), value.parse::<u64>()) else {
            continue;
        };
        let entry = counters.entry(queue).or_default();
        match what {
            "xdp_packets" => entry.0 = value,
            "xdp_bytes" => entry.1 = value,
            _ => {}
        }
    }
    counters
}

/// What moved on each queue between two reads.
fn delta(
    before: &BTreeMap<u16, (u64, u64)>,
    after: &BTreeMap<u16, (u64, u64)>,
) -> BTreeMap<u16, (u64, u64)> {
    after
        .iter()
        .map(|(q, (p, b))| {
            let (p0, b0) = before.get(q).copied().unwrap_or_default();
            (*q, (p - p0, b - b0))
        })
        .collect()
}

/// Maps each of the client's transmit queues to the CPUs in `masks` (XPS).
fn steer(lab: &Lab, masks: &[(u16, u64)]) {
    for (queue, mask) in masks {
        let path = format!(
            "/sys/class/net/{}/queues/tx-{queue}/xps_cpus",
            lab.client_if()
        );
        let out = lab
            .exec(Node::Client, "sh")
            .args(["-c", &format!("echo {mask:x} > {path}")])
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "cannot set {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct SplitRun {
    output: String,
    exit_code: Option<i32>,
    /// Per-queue deltas while the first and the second part were sent.
    first: BTreeMap<u16, (u64, u64)>,
    second: BTreeMap<u16, (u64, u64)>,
    hello_len: u64,
    split: u64,
}

fn read_line(stdout: &mut BufReader<ChildStdout>, output: &mut String) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("reading the client");
    output.push_str(&line);
    line
}

fn go(stdin: &mut ChildStdin) {
    stdin.write_all(b"go\n").expect("writing to the client");
    stdin.flush().expect("writing to the client");
}

/// Runs the split client for `host`, reading the queue counters around each part.
fn split_fetch(lab: &Lab, server: &TlsServer, host: &str, cpus: (usize, usize)) -> SplitRun {
    let mut cmd = lab.exec(Node::Client, python3());
    cmd.args(["-c", SPLIT_CLIENT, host])
        .arg(lab.server_v4().to_string())
        .arg(server.ca_path())
        .arg(PATIENCE.as_secs_f64().to_string())
        .arg(cpus.0.to_string())
        .arg(cpus.1.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(&mut cmd).expect("python3 starts");
    let mut stdin = child.take_stdin().expect("piped stdin");
    let mut stdout = BufReader::new(child.take_stdout().expect("piped stdout"));
    let mut output = String::new();
    let ready = read_line(&mut stdout, &mut output);
    let fields: Vec<u64> = ready
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    assert!(
        ready.starts_with("ready") && fields.len() == 2,
        "client: {output}"
    );
    // Whatever was in flight (the TCP handshake) settles before the counters are read.
    let settle = || thread::sleep(Duration::from_millis(150));
    settle();
    let q0 = queue_counters(lab);
    go(&mut stdin);
    assert_eq!(
        read_line(&mut stdout, &mut output).trim(),
        "sent1",
        "{output}"
    );
    settle();
    let q1 = queue_counters(lab);
    go(&mut stdin);
    assert_eq!(
        read_line(&mut stdout, &mut output).trim(),
        "sent2",
        "{output}"
    );
    settle();
    let q2 = queue_counters(lab);
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(3);
    let exit_code = loop {
        if let Some(status) = child.try_wait().expect("polling the client") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the client hangs: {output}");
        thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    while !read_line(&mut stdout, &mut rest).is_empty() {}
    output.push_str(&rest);
    SplitRun {
        output,
        exit_code,
        first: delta(&q0, &q1),
        second: delta(&q1, &q2),
        hello_len: fields[0],
        split: fields[1],
    }
}

/// The part sent in a window arrived on `queue`, and not on `other`.
fn assert_arrived_on(
    window: &BTreeMap<u16, (u64, u64)>,
    queue: u16,
    other: u16,
    bytes: u64,
    what: &str,
) {
    let (packets, got) = window.get(&queue).copied().unwrap_or_default();
    assert!(
        packets >= 1 && got >= bytes,
        "{what} ({bytes} bytes of hello) did not arrive on receive queue {queue}: {window:?}"
    );
    let (_, elsewhere) = window.get(&other).copied().unwrap_or_default();
    assert!(
        elsewhere < bytes,
        "{what} also arrived on receive queue {other}: {window:?}"
    );
}

#[test]
fn a_hello_split_over_two_receive_queues_is_read_as_one() {
    let cpus = allowed_cpus();
    assert!(
        cpus.len() >= 2,
        "this test needs two CPUs, the machine has {}",
        cpus.len()
    );
    let (cpu_a, cpu_b) = (cpus[0], cpus[1]);
    let lab =
        Lab::with_options("mq", &LabOptions::default().client_link_queues(QUEUES)).expect("lab");
    assert_eq!(lab.client_link_queues(), QUEUES);
    steer(
        &lab,
        &[(0, 0), (QUEUE_A, 1 << cpu_a), (QUEUE_B, 1 << cpu_b), (3, 0)],
    );
    let server = TlsServer::start(&lab, &[BANNED, ALLOWED]).expect("nginx");
    let daemon = shipped_daemon(&lab);

    for host in [ALLOWED, BANNED] {
        let before = daemon.status().unwrap();
        let run = split_fetch(&lab, &server, host, (cpu_a, cpu_b));
        let after = daemon.status().unwrap();
        println!(
            "{host}: hello {} bytes cut at {}; queue deltas while sending part 1 {:?}, part 2 \
             {:?}; exit {:?}",
            run.hello_len, run.split, run.first, run.second, run.exit_code
        );
        assert_arrived_on(&run.first, QUEUE_A, QUEUE_B, run.split, "part 1");
        assert_arrived_on(
            &run.second,
            QUEUE_B,
            QUEUE_A,
            run.hello_len - run.split,
            "part 2",
        );
        let later = after.note("sni_from_later_segment") - before.note("sni_from_later_segment");
        assert!(
            later >= 1 && moved(&before, &after, "hello_incomplete") >= 1,
            "{host}: the name was not read across the two segments:\n{}",
            after.text
        );
        if host == ALLOWED {
            assert_eq!(run.exit_code, Some(0), "{}", run.output);
            assert!(
                run.output.contains(&response_body(ALLOWED)) && run.output.contains("verified"),
                "{}",
                run.output
            );
            assert_moved(&before, &after, "hello_allowed", ALLOWED);
        } else {
            assert_eq!(
                run.exit_code,
                Some(3),
                "{BANNED} was served: {}",
                run.output
            );
            assert!(!run.output.contains("verified"), "{}", run.output);
            assert_moved(&before, &after, "hello_blocked", BANNED);
        }
    }
    assert_never_served(&server, BANNED);
    println!("{}", daemon.status().unwrap().text);
}

/// The CPUs this process may run on (XPS masks below are 64 bits wide).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set, which sched_getaffinity fills.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..64)
        // SAFETY: `set` is initialised and 64 is within CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}
