//! Timing XDP programs with `BPF_PROG_TEST_RUN`: the floor programs (`bench_pass`,
//! `bench_drop`) from a copy of the object of their own, one timed call, and pinning this
//! thread to one CPU so that every repeat runs where the previous one did.

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
};
use filter_common::names;
use sni_filter::filter::{OBJECT, error_chain};

pub use filter_common::wire::{XDP_DROP, XDP_PASS};

/// The empty programs the filter is measured against, loaded from the same object.
pub struct Floors {
    ebpf: Ebpf,
}

impl Floors {
    pub fn load() -> Result<Self> {
        // The floors use no map; keep the maps this copy creates small.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(names::RULES, 16)
            .map_max_entries(names::VERDICTS, 16)
            .map_max_entries(names::HELLOS, 16)
            .load(OBJECT)
            .context("loading a second copy of the XDP object (run as root)")?;
        for name in [names::BENCH_PASS, names::BENCH_DROP] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .with_context(|| format!("program {name} missing from the object"))?
                .try_into()
                .with_context(|| format!("{name} is not an XDP program"))?;
            program.load().with_context(|| format!("loading {name}"))?;
        }
        Ok(Self { ebpf })
    }

    fn get(&self, name: &str) -> &Xdp {
        self.ebpf
            .program(name)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    /// `bench_pass`: returns `XDP_PASS`, nothing else.
    pub fn pass(&self) -> &Xdp {
        self.get(names::BENCH_PASS)
    }

    /// `bench_drop`: returns `XDP_DROP`, nothing else.
    pub fn drop_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(names::BENCH_DROP)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }
}

/// One `BPF_PROG_TEST_RUN` call.
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub action: u32,
    /// The kernel's figure: nanoseconds per run, averaged over the repeats (whole ns).
    /// Wall time would not do: each call with repeats switches the kernel's XDP dispatcher
    /// to the program and back, which takes milliseconds.
    pub ns: f64,
}

/// Runs `frame` through `program` `repeat` times in one call.
pub fn time(program: &Xdp, frame: &[u8], repeat: u32) -> Result<Timed> {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat,
        attrs: TestRunAttrs::new(),
        ..TestRunOptions::new()
    };
    let result = program
        .test_run(opts)
        .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {}", error_chain(&e)))?;
    Ok(Timed {
        action: result.return_value,
        ns: result.duration.as_nanos() as f64,
    })
}

/// The CPU the timings run on: the last one (CPU 0 takes most interrupts).
pub fn bench_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get) - 1
}

/// Pins the calling thread to `cpu` (`None`: every CPU again).
pub fn pin(cpu: Option<usize>) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; the CPU_* helpers stay inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        match cpu {
            Some(c) => libc::CPU_SET(c, &mut set),
            None => {
                for c in 0..libc::CPU_SETSIZE as usize {
                    libc::CPU_SET(c, &mut set);
                }
            }
        }
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}

/// The median of `values` (mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        f64::midpoint(v[mid - 1], v[mid])
    }
}
