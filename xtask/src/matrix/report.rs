//! The matrix's verdict: one row per kernel (the host's included) with each program's
//! verifier figures and the test counts, and every reason the stage fails, named.

use std::fmt::Write as _;

use super::parse::{self, Console, TestCounts, Verification};
use super::suite::{DOCTOR, TEST_TARGETS};

/// The programs `sni-filter doctor` loads and reports on.
pub const PROGRAMS: &[&str] = &["sni_filter", "sni_judge"];
/// DESIGN.md's margin: at most 200 000 processed instructions per program, a fifth of the
/// verifier's 1M limit, since its work differs between kernels and between host CPUs.
const MAX_INSTRUCTIONS: u64 = 200_000;
/// A verification that slow means a program close to the verifier's limits.
const MAX_VERIFY_SECS: f64 = 1.0;
/// How much slower a guest under QEMU's software emulation verifies than the host: loading
/// the same program took 4.5 s in the 6.12 guest against 0.5 s on the host, so a guest's
/// time is held to the bound scaled by this much (its instruction count is not scaled).
const GUEST_SLOWDOWN: f64 = 10.0;

/// What one kernel did.
pub struct Row {
    /// The kernel release, `(host)` added for the host's own.
    pub kernel: String,
    /// Seconds from the guest kernel's start to the suite's start; None on the host.
    pub boot_secs: Option<f64>,
    /// Wall-clock seconds of the whole run, boot included.
    pub run_secs: f64,
    pub console: Console,
    /// Why the kernel could not be fetched, booted or run to the end.
    pub error: Option<String>,
}

impl Row {
    /// Every reason this row fails the stage, each naming the kernel; empty when it passes.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.error.iter().cloned().collect();
        if let Some(why) = &self.console.init_failure {
            problems.push(format!("the guest's init failed: {why}"));
        }
        // A kernel that never began the suite has those problems, not one per step.
        if self.console.steps.is_empty() {
            if problems.is_empty() {
                problems.push("the suite did not run".into());
            }
        } else {
            self.step_problems(&mut problems);
        }
        problems
            .into_iter()
            .map(|p| format!("{}: {p}", self.kernel))
            .collect()
    }

    fn step_problems(&self, problems: &mut Vec<String>) {
        let expected = std::iter::once(DOCTOR).chain(TEST_TARGETS.iter().copied());
        for name in expected {
            let Some(step) = self.console.steps.iter().find(|s| s.name == name) else {
                problems.push(format!("{name} did not run"));
                continue;
            };
            let Some(exit) = step.exit else {
                problems.push(format!("{name} did not finish"));
                continue;
            };
            if name == DOCTOR {
                let secs_bound = if self.boot_secs.is_some() {
                    MAX_VERIFY_SECS * GUEST_SLOWDOWN
                } else {
                    MAX_VERIFY_SECS
                };
                doctor_problems(&step.lines, exit, secs_bound, problems);
                continue;
            }
            match parse::test_counts(&step.lines) {
                None => problems.push(format!("{name} printed no test result (exit {exit})")),
                Some(counts) if counts.failed > 0 => {
                    let first = parse::first_panic(&step.lines)
                        .map(|why| format!(", the first: {why}"))
                        .unwrap_or_default();
                    problems.push(format!("{name}: {} tests failed{first}", counts.failed));
                }
                Some(_) if exit != 0 => problems.push(format!("{name} exited {exit}")),
                Some(_) => {}
            }
        }
    }

    fn verification(&self, program: &str) -> String {
        let lines = self.step_lines(DOCTOR);
        match lines.and_then(|l| parse::verification(l, program)) {
            Some(Verification::Processed { instructions, secs }) => {
                format!("{instructions:>9}  {secs:>7.3} s")
            }
            Some(Verification::Refused) => format!("{:>9}  {:>9}", "refused", ""),
            None => format!("{:>9}  {:>9}", "-", "-"),
        }
    }

    fn tests(&self, target: &str) -> String {
        let step = self.console.steps.iter().find(|s| s.name == target);
        match step {
            None => "not run".into(),
            Some(step) => match parse::test_counts(&step.lines) {
                Some(TestCounts { passed, failed }) => format!("{passed}/{failed}"),
                None if step.exit.is_none() => "cut off".into(),
                None => "no result".into(),
            },
        }
    }

    fn step_lines(&self, name: &str) -> Option<&[String]> {
        self.console
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.lines.as_slice())
    }
}

/// Doctor's figures for each program against the bounds.
fn doctor_problems(lines: &[String], exit: i32, secs_bound: f64, problems: &mut Vec<String>) {
    for program in PROGRAMS {
        match parse::verification(lines, program) {
            None => problems.push(format!(
                "doctor printed no `verifier {program} N instructions processed in S s` \
                 line: the figures are missing"
            )),
            Some(Verification::Refused) => {
                problems.push(format!("the verifier refused {program}"));
            }
            Some(Verification::Processed { instructions, secs }) => {
                if instructions > MAX_INSTRUCTIONS {
                    problems.push(format!(
                        "{program}: {instructions} instructions processed, over the \
                         bound of {MAX_INSTRUCTIONS}"
                    ));
                }
                if secs >= secs_bound {
                    problems.push(format!(
                        "{program}: verification took {secs:.3} s, the bound is under \
                         {secs_bound} s"
                    ));
                }
            }
        }
    }
    if exit != 0 {
        problems.push(format!("doctor exited {exit}"));
    }
}

/// The table: kernel x program, the verifier's figures, then the kernel's test counts.
pub fn print(rows: &[Row]) {
    let kernel_width = rows
        .iter()
        .map(|r| r.kernel.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let program_width = PROGRAMS.iter().map(|p| p.len()).max().unwrap_or(7);
    let mut header = format!(
        "{:<kernel_width$}  {:<program_width$}  {:>9}  {:>9}",
        "kernel", "program", "processed", "verified"
    );
    for target in TEST_TARGETS {
        let _ = write!(header, "  {target:>12}");
    }
    let _ = write!(header, "  {:>6}  {:>6}", "boot", "run");
    println!("{header}");
    for row in rows {
        for (i, program) in PROGRAMS.iter().enumerate() {
            let kernel = if i == 0 { row.kernel.as_str() } else { "" };
            let mut line = format!(
                "{kernel:<kernel_width$}  {program:<program_width$}  {}",
                row.verification(program)
            );
            if i == 0 {
                for target in TEST_TARGETS {
                    let _ = write!(line, "  {:>12}", row.tests(target));
                }
                let boot = row
                    .boot_secs
                    .map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s"));
                let _ = write!(line, "  {boot:>6}  {:>4.0} s", row.run_secs);
            }
            println!("{}", line.trim_end());
        }
    }
    println!(
        "tests: passed/failed per test binary; boot: guest kernel start to the suite's start; \
         run: wall clock, boot included"
    );
}
