//! iptables' string match (bm and kmp) on the forwarding path of the third pair, with 1 to
//! 1000 rules that never match: what the usual alternative to the filter costs per hello.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use sni_filter_lab::{hello::TcpSegment, run_in_netns};

use super::topo::{Amount, BLAST_SECS, Topo, blast};
use crate::bench::bpf::{self, Floors};
use crate::bench::frames::{self, ALLOWED};
use crate::bench::live;
use crate::bench::packet::filter_for;
use crate::bench::report::{Report, Table, Target, ns};
use crate::shell::{self, cmd};

/// The rule counts of the iptables comparison.
const IPT_RULES: [usize; 4] = [1, 10, 100, 1000];

/// iptables' string match on the forwarding path of `x3`: ns per hello at 100 % of one CPU
/// with 0..1000 rules, none of which matches (the hello is allowed: all rules are tried).
pub(super) fn iptables(topo: &Topo, dir: &Path, cpu: usize, report: &mut Report) -> Result<()> {
    let mut seg = TcpSegment::new(sni_filter_lab::hello::IpPair::v4_example(), 36000, 443);
    seg.link.dst_mac = topo.x3_mac;
    let hello = seg.frame(&frames::hello(ALLOWED, false));
    // A veth takes frames sent with XDP only with NAPI, which an XDP program (or GRO, which
    // would merge the identical hellos) turns on: one that undoes forwarding's TTL
    // decrement, since the generator's pages are recycled as they are.
    let _link = run_in_netns(topo.gw.name(), || -> Result<_> {
        let program = live::restore_ttl_program(hello[22], [hello[24], hello[25]])?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"x3".as_ptr()) };
        live::attach_native(&program, ifindex)
    })??;
    let version = shell::output(&mut cmd("iptables", ["-V"])).unwrap_or_default();
    let mut rows: Vec<(String, usize, f64, u64)> = Vec::new();
    let measure = |algo: &str, n: usize| -> Result<(f64, u64)> {
        load_rules(topo, algo, n)?;
        let b = blast(topo, 3, &hello, Amount::Secs(BLAST_SECS), cpu)?;
        let handled = final_rule_packets(topo)?;
        if handled == 0 {
            bail!("iptables: no packet reached the end of FORWARD");
        }
        Ok((b.busy_secs * 1e9 / handled as f64, handled))
    };
    // Zero rules first and last: the stack's own cost, and a check of drift.
    let (base_a, h) = measure("bm", 0)?;
    rows.push(("none".into(), 0, base_a, h));
    for algo in ["bm", "kmp"] {
        for n in IPT_RULES {
            let (v, h) = measure(algo, n)?;
            rows.push((algo.into(), n, v, h));
        }
    }
    let (base_b, h) = measure("bm", 0)?;
    rows.push(("none".into(), 0, base_b, h));
    load_rules(topo, "none", 0)?;
    shell::output(topo.gw.exec("iptables").args(["-F", "FORWARD"]))?;
    let base = f64::midpoint(base_a, base_b);

    let ours = match report.json.get("per_packet").and_then(|v| {
        v.as_array()?
            .iter()
            .find(|c| c["class"] == "hello_allowed_last")?
            .get("net_ns")?
            .as_f64()
    }) {
        Some(v) => Some(v),
        // The per-packet part did not run (`--only`): time that class here.
        None => Some(hello_net_ns(dir, cpu)?),
    };
    let mut table = Table::new(
        "iptables string match vs sni-filter, same 1.8 KB hello (allowed: every rule is tried), one CPU",
        &[
            "rules",
            "algo",
            "ns/packet (stack + iptables)",
            "string match ns (over 0 rules)",
            "sni-filter net ns (hello SNI last)",
            "sni-filter cheaper by",
            "target",
        ],
    );
    for (algo, n, v, handled) in &rows {
        let marginal = v - base;
        let ratio = ours.map(|o| marginal / o);
        let target = (algo == "bm" && *n == 100)
            .then(|| ratio.map(|r| Target::at_least(r, 300.0, "×")))
            .flatten();
        table.row(vec![
            n.to_string(),
            algo.clone(),
            ns(*v),
            if *n == 0 { "—".into() } else { ns(marginal) },
            ours.map_or_else(|| "?".into(), ns),
            match (ratio, *n) {
                (_, 0) | (None, _) => "—".into(),
                (Some(r), _) if r < 10.0 => format!("{r:.1}×"),
                (Some(r), _) => format!("{r:.0}×"),
            },
            target.as_ref().map_or_else(String::new, |t| t.text.clone()),
        ]);
        report.push(
            "iptables",
            json!({
                "algo": algo, "rules": n, "ns_per_packet": v, "string_match_ns": marginal,
                "handled": handled, "sni_filter_net_ns": ours, "ratio": ratio,
                "target": target.as_ref().map(Target::json),
            }),
        );
    }
    table.note(format!(
        "{}: `iptables -A FORWARD -m string --algo ALGO --string NAME -j DROP` for N names \
         that are not in the hello, then `-j DROP` for all, on the gateway side of a veth \
         pair fed by the same in-kernel generator; ns/packet is the CPU's busy time over the \
         packets counted by the last rule (forwarding's TTL decrement is undone by a \
         two-store XDP program on the receiving veth, which also gives it NAPI; GRO off). The string match's cost is ns/packet minus the same \
         with no string rule (mean of a run before and after). sni-filter's figure is its \
         net per-packet cost for the same hello from the first table.",
        version.trim()
    ));
    report.tables.push(table);
    Ok(())
}

/// The net cost of the allowed 1.8 KB hello with the SNI last, as the per-packet part
/// measures it (median of 5 runs of 200k repeats).
fn hello_net_ns(dir: &Path, cpu: usize) -> Result<f64> {
    let (filter, _) = filter_for(frames::CONFIG, dir)?;
    let floors = Floors::load()?;
    let frame = frames::hello_frame(36001, ALLOWED, false);
    bpf::pin(Some(cpu))?;
    let mut nets = Vec::new();
    for _ in 0..5 {
        let f = bpf::time(floors.pass(), &frame, 200_000);
        let v = bpf::time(filter.program(), &frame, 200_000);
        nets.push(v?.ns - f?.ns);
    }
    bpf::pin(None)?;
    Ok(bpf::median(&nets))
}

/// Replaces FORWARD with `n` string rules of `algo` and a final drop.
fn load_rules(topo: &Topo, algo: &str, n: usize) -> Result<()> {
    let mut text = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
    for i in 0..n {
        let _ = writeln!(
            text,
            "-A FORWARD -m string --algo {algo} --string \"{}\" -j DROP",
            crate::bench::scaling::rule_name(i)
        );
    }
    if algo != "none" {
        text.push_str("-A FORWARD -j DROP\n");
    }
    text.push_str("COMMIT\n");
    let mut child = topo
        .gw
        .exec("iptables-restore")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start iptables-restore")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "iptables-restore failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Packets counted by the last rule of FORWARD (the catch-all drop).
fn final_rule_packets(topo: &Topo) -> Result<u64> {
    let out = shell::output(
        topo.gw
            .exec("iptables")
            .args(["-L", "FORWARD", "-v", "-x", "-n"]),
    )?;
    let mut matched_early = 0u64;
    let mut last = 0u64;
    let rules: Vec<&str> = out.lines().skip(2).collect();
    for (i, line) in rules.iter().enumerate() {
        let pkts: u64 = line
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if i + 1 == rules.len() {
            last = pkts;
        } else {
            matched_early += pkts;
        }
    }
    if matched_early != 0 {
        bail!("iptables: {matched_early} packets matched a string rule (none should)");
    }
    Ok(last)
}
