//! The table's rows about the hello itself: names banned, allowed, monitored, of a disabled
//! app, matched by exact and wildcard rules; hellos of every size and record size, without
//! a name, with several, malformed, or not a ClientHello at all.

use filter_common::Reason;
use sni_filter_lab::hello::{ClientHelloBuilder, IpPair, tls_records};

use super::common::program::{Case, XDP_DROP, XDP_PASS, case, strict};
use super::{chrome_name_last, hello_frame, tcp};

// One table: long by nature.
#[allow(clippy::too_many_lines)]
pub fn cases() -> Vec<Case> {
    let v4 = IpPair::v4_example();
    let chrome = tls_records(&ClientHelloBuilder::chrome("www.tiktok.com").build(), 16384);
    let chrome_ok = tls_records(
        &ClientHelloBuilder::chrome("www.example.org").build(),
        16384,
    );
    let small_records = tls_records(&ClientHelloBuilder::minimal("www.tiktok.com").build(), 40);
    let chrome_sni_last = chrome_name_last("www.tiktok.com");
    let mut server_hello = ClientHelloBuilder::minimal("www.tiktok.com").build();
    server_hello[0] = 2;
    let mut malformed = ClientHelloBuilder::minimal("www.tiktok.com").build();
    // The session-id length (after type 1, length 3, version 2, random 32) made too long.
    malformed[38] = 200;
    vec![
        case(
            "allowed name passes",
            vec![hello_frame("www.example.org")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "banned name drops",
            vec![hello_frame("www.tiktok.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "the banned domain itself drops",
            vec![hello_frame("tiktok.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "case and trailing dot do not evade",
            vec![hello_frame("WwW.TikTok.COM.")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a name ending like a rule is not below it",
            vec![hello_frame("nottiktok.com")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "a rule inside a longer name does not match",
            vec![hello_frame("tiktok.com.example.net")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "exact rule matches its name",
            vec![hello_frame("exact-only.example")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "exact rule does not match below",
            vec![hello_frame("www.exact-only.example")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "hello without SNI passes, counted",
            vec![tcp(v4).frame(&tls_records(
                &ClientHelloBuilder::minimal("x").no_server_name().build(),
                16384,
            ))],
            XDP_PASS,
            &[(Reason::HelloNoSni, 1)],
        ),
        case(
            "Chrome-size post-quantum hello drops",
            vec![tcp(v4).frame(&chrome)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "Chrome-size hello for another name passes",
            vec![tcp(v4).frame(&chrome_ok)],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "hello in 40-byte TLS records drops",
            vec![tcp(v4).frame(&small_records)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "second of several names is banned",
            vec![
                tcp(v4).frame(&tls_records(
                    &ClientHelloBuilder::minimal("www.example.org")
                        .server_name("m.tiktok.com")
                        .build(),
                    16384,
                )),
            ],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "monitored app passes, counted",
            vec![hello_frame("a.watched.example")],
            XDP_PASS,
            &[(Reason::HelloMonitored, 1)],
        ),
        case(
            "disabled app passes",
            vec![hello_frame("disabled.example")],
            XDP_PASS,
            &[(Reason::HelloAllowed, 1)],
        ),
        case(
            "Chrome-size hello with the name last drops",
            vec![tcp(v4).frame(&chrome_sni_last)],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "ServerHello is not a ClientHello",
            vec![tcp(v4).frame(&tls_records(&server_hello, 16384))],
            XDP_PASS,
            &[(Reason::NotClientHello, 1)],
        ),
        case(
            "malformed hello passes with the lenient policy, counted",
            vec![tcp(v4).frame(&tls_records(&malformed, 16384))],
            XDP_PASS,
            &[(Reason::UninspectableMalformed, 1)],
        ),
        strict(
            "malformed hello is dropped with the strict policy",
            vec![tcp(v4).frame(&tls_records(&malformed, 16384))],
            XDP_DROP,
            &[(Reason::UninspectableMalformed, 1)],
        ),
        case(
            "a wildcard label matches below its parent",
            vec![
                hello_frame("p16-tiktok-va.ibyteimg.com"),
                hello_frame("x.P16-TikTok-SG.ibyteimg.com"),
            ],
            XDP_DROP,
            &[(Reason::HelloBlocked, 2)],
        ),
        case(
            "a second wildcard of the same parent matches too",
            vec![hello_frame("p19-sign-va.ibyteimg.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a label that does not fit the wildcard passes",
            vec![
                hello_frame("p16-other.ibyteimg.com"),
                hello_frame("ibyteimg.com"),
            ],
            XDP_PASS,
            &[(Reason::HelloAllowed, 2)],
        ),
    ]
}
