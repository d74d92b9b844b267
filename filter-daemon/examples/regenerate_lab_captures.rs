//! Makes the lab captures of `tests/fixtures/` again, from a fresh lab (root; replaces both
//! files): Chromium fetching www.tiktok.com until its name falls in the second segment, and
//! a crafted hello padded past one segment over a real TCP connection.
//!
//! Run: `cargo run -p filter-daemon --example regenerate_lab_captures`

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sni_filter_lab::capture::{
    Stand, Tcpdump, client_hello_connection, client_segments, read_pcap, restage, segment_of,
    write_pcap,
};
use sni_filter_lab::hello::{ClientHelloBuilder, SniPosition, tls_records};
use sni_filter_lab::{
    FetchOpts, HTTPS_PORT, Lab, Node, ScratchDir, TlsClient, TlsServer, fetch, run_in_netns,
};

const BANNED: &str = "www.tiktok.com";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
const CHROMIUM: &str = "chromium-tiktok.pcap";
const PADDED: &str = "padded-hello-tiktok.pcap";
/// Chromium hellos captured at most, looking for one with the name in its second segment.
const CHROMIUM_TRIES: usize = 20;

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
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

fn main() {
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
            segment_of(&client_segments(&records), BANNED.as_bytes()) == Some(2)
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
