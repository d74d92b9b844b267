//! Captures made in the lab, kept as fixtures in `tests/fixtures/`: each is one connection's
//! `ClientHello` to www.tiktok.com spread over two TCP segments (Chromium's post-quantum
//! hello; a crafted hello padded past one segment). `sni-filter replay` must read the name
//! across the segments and drop the flow with the repository's configuration.
//!
//! `regenerate_lab_captures` (ignored; run it by hand as root) makes them again; see
//! `tests/fixtures/README.md`. Replaying needs root (`BPF_PROG_TEST_RUN`).

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sni_filter_lab::capture::{
    PcapRecord, Stand, Tcpdump, client_hello_connection, read_pcap, restage, tcp_frame, write_pcap,
};
use sni_filter_lab::hello::{ClientHelloBuilder, SniPosition, tls_records};
use sni_filter_lab::{
    FetchOpts, HTTPS_PORT, Lab, Node, ScratchDir, TlsClient, TlsServer, fetch, run_in_netns,
};

const BIN: &str = env!("CARGO_BIN_EXE_sni-filter");
const BANNED: &str = "www.tiktok.com";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
/// Chromium fetching `https://www.tiktok.com/`.
const CHROMIUM: &str = "chromium-tiktok.pcap";
/// A crafted hello padded to 2000 bytes with the name after the padding, over a real TCP
/// connection.
const PADDED: &str = "padded-hello-tiktok.pcap";
/// Chromium hellos captured at most, looking for one with the name in its second segment.
const CHROMIUM_TRIES: usize = 20;
/// Fixtures stay small: only the handshake packets up to the end of the hello.
const FIXTURE_MAX_BYTES: u64 = 8 * 1024;

fn repo_config() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/filter.toml"
    ))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The flows `sni-filter replay --json [--config CONFIG] CAPTURE` prints.
fn replay(capture: &Path, config: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(BIN);
    cmd.args(["replay", "--json"]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let out = cmd.arg(capture).output().expect("sni-filter runs");
    assert!(
        out.status.success(),
        "replay {} failed ({}): {}",
        capture.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The client's TCP payloads of a restaged capture, segment by segment.
fn client_segments(records: &[PcapRecord]) -> Vec<Vec<u8>> {
    let stand = Stand::default();
    records
        .iter()
        .filter_map(|r| tcp_frame(&r.data))
        .filter(|f| f.tcp.source_port == stand.client_port && !f.payload.is_empty())
        .map(|f| f.payload)
        .collect()
}

/// Which of the client's segments (1, 2, ...) the banned name starts in.
fn segment_of_name(segments: &[Vec<u8>]) -> Option<usize> {
    let stream = segments.concat();
    let at = stream
        .windows(BANNED.len())
        .position(|w| w == BANNED.as_bytes())?;
    let mut end = 0;
    segments
        .iter()
        .position(|s| {
            end += s.len();
            at < end
        })
        .map(|i| i + 1)
}

/// The hello offers the X25519MLKEM768 key share (group 0x11ec, 1216 bytes).
fn has_post_quantum_share(segments: &[Vec<u8>]) -> bool {
    segments
        .concat()
        .windows(4)
        .any(|w| w == [0x11, 0xec, 0x04, 0xc0])
}

#[test]
fn lab_captures_yield_the_banned_name_and_the_flow_is_dropped() {
    let stand = Stand::default();
    for name in [CHROMIUM, PADDED] {
        let path = fixture(name);
        let size = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert!(size <= FIXTURE_MAX_BYTES, "{name} is {size} bytes");
        let (_, records) = read_pcap(&fs::read(&path).unwrap()).unwrap();
        let segments = client_segments(&records);
        let sizes: Vec<usize> = segments.iter().map(Vec::len).collect();
        assert!(
            sizes.len() == 2 && sizes.iter().sum::<usize>() > 1500,
            "{name}: the hello should span two segments: {sizes:?}"
        );
        // The name is only in the second segment: the program must carry the first over.
        assert_eq!(segment_of_name(&segments), Some(2), "{name}: {sizes:?}");
        if name == CHROMIUM {
            assert!(
                has_post_quantum_share(&segments),
                "{name}: no X25519MLKEM768 share"
            );
        }

        let flows = replay(&path, Some(&repo_config()));
        assert_eq!(flows.len(), 1, "{name}: {flows:?}");
        let flow = &flows[0];
        println!("{name}: client segments {sizes:?}: {flow}");
        assert_eq!(flow["sni"], BANNED, "{name}: {flow}");
        assert_eq!(flow["action"], "drop", "{name}: {flow}");
        assert_eq!(flow["app"], "tiktok", "{name}: {flow}");
        assert_eq!(flow["transport"], "tcp", "{name}: {flow}");
        assert_eq!(flow["reason"], "hello_blocked", "{name}: {flow}");
        assert_eq!(
            flow["client"],
            format!("{}:{}", stand.client_v4, stand.client_port),
            "{name}: {flow}"
        );
        assert_eq!(
            flow["server"],
            format!("{}:{HTTPS_PORT}", stand.server_v4),
            "{name}: {flow}"
        );

        // Without rules the name is read all the same, and the flow passes.
        let flows = replay(&path, None);
        assert_eq!(flows.len(), 1, "{name}: {flows:?}");
        assert_eq!(flows[0]["sni"], BANNED, "{name}: {}", flows[0]);
        assert_eq!(flows[0]["action"], "pass", "{name}: {}", flows[0]);
    }
}

/// Captures `act` at the gateway's client-facing interface and keeps the first connection
/// to port 443 up to its complete hello, restaged to fixed addresses and times.
fn capture(lab: &Lab, act: impl FnOnce()) -> Vec<u8> {
    let dir = ScratchDir::new("capture").expect("temporary folder");
    let raw = dir.path().join("raw.pcap");
    let tcpdump = Tcpdump::start(
        lab,
        Node::Gateway,
        lab.gateway_client_if(),
        &raw,
        &["tcp", "port", "443"],
    )
    .expect("tcpdump starts");
    act();
    let raw = tcpdump.stop().expect("tcpdump stops");
    let (_, records) = read_pcap(&fs::read(raw).unwrap()).unwrap();
    let connection = client_hello_connection(&records, HTTPS_PORT).expect("a hello");
    write_pcap(&restage(&connection, &Stand::default()).expect("restaged"))
}

#[test]
#[ignore = "writes tests/fixtures/ from a fresh lab; run by hand as root"]
fn regenerate_lab_captures() {
    let lab = Lab::new("fixt").expect("lab");
    let server = TlsServer::start(&lab, &[BANNED]).expect("nginx");

    // Chromium shuffles its extensions: fetch until the name falls in the second segment.
    let chromium = (0..CHROMIUM_TRIES)
        .map(|_| {
            capture(&lab, || {
                let run = fetch(
                    &lab,
                    TlsClient::Chromium,
                    BANNED,
                    &FetchOpts::new(server.ca_path()),
                )
                .expect("chromium starts");
                assert!(run.served(), "{}", run.summary());
            })
        })
        .find(|pcap| {
            let (_, records) = read_pcap(pcap).unwrap();
            segment_of_name(&client_segments(&records)) == Some(2)
        })
        .expect("no Chromium hello with the name in its second segment");
    fs::write(fixture(CHROMIUM), chromium).expect("writing the fixture");

    let padded = capture(&lab, || {
        let hello = ClientHelloBuilder::minimal(BANNED)
            .sni_position(SniPosition::Last)
            .pad_to(2000)
            .build();
        let records = tls_records(&hello, hello.len());
        let server_addr = SocketAddr::new(lab.server_v4().into(), HTTPS_PORT);
        run_in_netns(lab.client_ns(), || {
            let mut stream =
                TcpStream::connect_timeout(&server_addr, Duration::from_secs(2)).unwrap();
            stream.set_nodelay(true).unwrap();
            stream.write_all(&records).unwrap();
            // Whatever the server answers (it cannot finish a handshake with made-up key
            // shares), wait for it so the hello is complete on the wire.
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let _ = stream.read(&mut [0; 4096]);
        })
        .unwrap();
    });
    fs::write(fixture(PADDED), padded).expect("writing the fixture");
}
