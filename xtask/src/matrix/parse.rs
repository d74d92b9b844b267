//! Reading a kernel's console (or the host's run of the suite): the markers that frame each
//! step, doctor's verifier figures and libtest's summary line.

/// What the suite's output says, step by step.
#[derive(Debug, Default)]
pub struct Console {
    /// Seconds since the guest's kernel started when the suite could begin.
    pub ready_at: Option<f64>,
    /// Why the guest's init gave up, if it did.
    pub init_failure: Option<String>,
    pub steps: Vec<StepOutput>,
}

#[derive(Debug, Default)]
pub struct StepOutput {
    pub name: String,
    pub lines: Vec<String>,
    /// None: the step began and never ended (the guest died or was stopped).
    pub exit: Option<i32>,
    pub secs: Option<f64>,
}

const MARKER: &str = "@@matrix ";

/// Splits the output into steps by the suite's markers.
pub fn console(text: &str) -> Console {
    let mut console = Console::default();
    let mut began_at = None;
    for raw in text.lines() {
        let plain = without_escapes(raw);
        let line = plain.trim_end_matches('\r');
        let Some(pos) = line.find(MARKER) else {
            if let Some(step) = console.steps.last_mut().filter(|s| s.exit.is_none()) {
                step.lines.push(line.to_owned());
            }
            continue;
        };
        let words: Vec<&str> = line[pos + MARKER.len()..].split_whitespace().collect();
        match words.as_slice() {
            ["ready", at] => console.ready_at = at.parse().ok(),
            ["init-failed", why @ ..] => console.init_failure = Some(why.join(" ")),
            ["step", name, "begin", at] => {
                began_at = at.parse::<f64>().ok();
                console.steps.push(StepOutput {
                    name: (*name).to_owned(),
                    ..StepOutput::default()
                });
            }
            ["step", name, "end", code, at] => {
                if let Some(step) = console.steps.last_mut().filter(|s| s.name == *name) {
                    step.exit = code.parse().ok();
                    step.secs = at
                        .parse::<f64>()
                        .ok()
                        .zip(began_at)
                        .map(|(end, begin)| end - begin);
                }
            }
            _ => {}
        }
    }
    console
}

/// The line without terminal escape sequences (`ESC [ ... letter`): the guests' console is a
/// terminal, and the firmware and any tool that colours its output write them.
fn without_escapes(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            plain.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    plain
}

/// The verifier's verdict on one program, as `sni-filter doctor` prints it.
#[derive(Debug, PartialEq)]
pub enum Verification {
    Processed { instructions: u64, secs: f64 },
    Refused,
}

/// The verdict doctor printed for `program`: a line naming `verifier PROGRAM` with either
/// `N instructions processed in S s` or `refused`; None when there is no such line.
pub fn verification(lines: &[String], program: &str) -> Option<Verification> {
    let tag = format!("verifier {program}");
    lines.iter().find_map(|line| {
        let rest = &line[line.find(&tag)? + tag.len()..];
        // `sni_filter` must not match the line of a longer name such as `sni_filter_v2`.
        if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
            return None;
        }
        if let Some(figures) = processed(rest) {
            return Some(figures);
        }
        rest.contains("refused").then_some(Verification::Refused)
    })
}

/// `... 48211 instructions processed in 0.081 s ...` -> the two figures; a time in any unit
/// but seconds is not read, so that it cannot pass for seconds.
fn processed(text: &str) -> Option<Verification> {
    let (before, after) = text.split_once(" instructions processed in ")?;
    let instructions = before.rsplit(' ').next()?.parse().ok()?;
    let mut words = after.split_whitespace();
    let time = words.next()?;
    let secs = match time.strip_suffix('s') {
        Some(number) => number.parse().ok()?,
        None if words.next()? == "s" => time.parse().ok()?,
        None => return None,
    };
    Some(Verification::Processed { instructions, secs })
}

/// libtest's closing counts, summed over its `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct TestCounts {
    pub passed: u32,
    pub failed: u32,
}

/// None when no `test result:` line was printed (the binary crashed or never ran).
pub fn test_counts(lines: &[String]) -> Option<TestCounts> {
    let mut counts: Option<TestCounts> = None;
    for line in lines {
        let Some(rest) = line.find("test result: ").map(|at| &line[at..]) else {
            continue;
        };
        let count = |word: &str| {
            rest.split(';').find_map(|part| {
                part.trim()
                    .strip_suffix(word)?
                    .rsplit(' ')
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
        };
        let (Some(passed), Some(failed)) = (count(" passed"), count(" failed")) else {
            continue;
        };
        let sum = counts.get_or_insert_with(TestCounts::default);
        sum.passed += passed;
        sum.failed += failed;
    }
    counts
}

/// The message of the first panic in a test binary's output, shortened: for a program the
/// verifier refused, the verifier's closing error lines rather than its whole log.
pub fn first_panic(lines: &[String]) -> Option<String> {
    let at = lines.iter().position(|l| l.contains("panicked at"))?;
    let message = lines.get(at + 1)?.trim();
    // aya's error carries the verifier's log with its line breaks escaped.
    let parts: Vec<&str> = message.split("\\n").collect();
    if let Some(end) = parts
        .iter()
        .position(|p| p.starts_with("verification time"))
    {
        let is_log = |p: &&str| {
            p.starts_with(';')
                || p.split(':')
                    .next()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
        };
        let start = parts[..end].iter().rposition(is_log).map_or(0, |i| i + 1);
        let refused = parts[0].split(" refused").next().unwrap_or_default();
        let refused = refused.rsplit('"').next().unwrap_or(refused);
        return Some(format!(
            "{refused} refused: {}",
            parts[start..end].join("; ")
        ));
    }
    Some(message.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::{TestCounts, Verification, console, first_panic, test_counts, verification};

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn steps_are_framed_by_markers_amid_boot_noise() {
        let out = "SeaBIOS\r\n@@matrix ready 2.44\r\n@@matrix step doctor begin 2.50\r\n\
                   ok    kernel 6.1\r\n[    3.1] a kernel message\r\n\
                   @@matrix step doctor end 0 4.00\r\n@@matrix step program begin 4.10\r\n\
                   running 13 tests\r\n";
        let c = console(out);
        assert_eq!(c.ready_at, Some(2.44));
        assert_eq!(c.steps.len(), 2);
        assert_eq!(c.steps[0].name, "doctor");
        assert_eq!(c.steps[0].exit, Some(0));
        assert!((c.steps[0].secs.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(c.steps[0].lines.len(), 2);
        assert_eq!(c.steps[1].exit, None, "the guest died in the middle of it");
        assert!(c.init_failure.is_none());
        let c = console(
            "@@matrix step program begin 1\n\u{1b}[2Jtest result: \u{1b}[32mok\u{1b}[m. 1 passed\n",
        );
        assert_eq!(c.steps[0].lines, ["test result: ok. 1 passed"]);
        let c = console("@@matrix init-failed mount virtiofs\n");
        assert_eq!(c.init_failure.as_deref(), Some("mount virtiofs"));
    }

    #[test]
    fn doctor_figures_are_read_per_program() {
        let out = lines(
            "  ok    verifier sni_judge   48211 instructions processed in 0.081 s (bound 200000, limit 1000000)\n\
             FAIL  verifier sni_filter  refused: invalid access to map value\n",
        );
        assert_eq!(
            verification(&out, "sni_judge"),
            Some(Verification::Processed {
                instructions: 48211,
                secs: 0.081
            })
        );
        assert_eq!(
            verification(&out, "sni_filter"),
            Some(Verification::Refused)
        );
        assert_eq!(verification(&out, "sni_other"), None);
        let longer = lines("ok verifier sni_filter_v2 5 instructions processed in 0.1 s");
        assert_eq!(verification(&longer, "sni_filter"), None);
        let attached = lines("ok verifier sni_filter 7 instructions processed in 0.5s");
        assert_eq!(
            verification(&attached, "sni_filter"),
            Some(Verification::Processed {
                instructions: 7,
                secs: 0.5
            })
        );
        let millis = lines("ok verifier sni_filter 7 instructions processed in 81 ms");
        assert_eq!(verification(&millis, "sni_filter"), None);
        let no_figures = lines("ok    XDP program    none attached to lo");
        assert_eq!(verification(&no_figures, "sni_filter"), None);
    }

    #[test]
    fn libtest_summaries_are_summed() {
        let out = lines(
            "test a ... ok\n\
             test result: FAILED. 2 passed; 4 failed; 0 ignored; 0 measured; 0 filtered out; finished in 13.94s\n\
             test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
        );
        assert_eq!(
            test_counts(&out),
            Some(TestCounts {
                passed: 3,
                failed: 4
            })
        );
        assert_eq!(test_counts(&lines("thread 'main' panicked")), None);
    }

    #[test]
    fn a_refusal_is_told_by_the_verifier_s_last_words() {
        let out = lines(concat!(
            "thread 'x' (120) panicked at filter-daemon/tests/program.rs:39:43:\n",
            r#"the program loads: Load("sni_judge: the verifier refused the program:\n2643: (bf) r5 = r7\n; matches!(x)\n2628: (71) r5 = *(u8 *)(r2 +0)\ninvalid access to map value\nR2 min value is outside\nverification time 1459047 usec\nprocessed 32059 insns")"#,
            "\nstack backtrace:\n",
        ));
        assert_eq!(
            first_panic(&out).as_deref(),
            Some(
                "sni_judge: the verifier refused: invalid access to map value; \
                 R2 min value is outside"
            )
        );
        let plain = lines("thread 'y' panicked at a.rs:1:1:\nassertion failed: x\n");
        assert_eq!(first_panic(&plain).as_deref(), Some("assertion failed: x"));
        assert_eq!(first_panic(&lines("test result: ok.")), None);
    }
}
