//! The compiled XDP program embedded in this binary: loading it (with the verifier's
//! figures), attaching it to interfaces, running test frames through it and reading its
//! counters. Its rule maps are written in `tables`, its flow tables kept in `flows`.

mod flows;
mod tables;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, ProgramArray},
    programs::{
        Xdp, XdpMode as AyaXdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use filter_common::{LAYOUT_VERSION, Settings, Sides, names};

use flows::HintWords;
pub use flows::monotonic_ns;

use crate::{
    Error,
    config::{Config, XdpMode},
    counters::{CounterMaps, Counters},
    state::{Instance, PINNED_MAPS},
};

/// The object file built from `filter-ebpf` by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/filter-ebpf"));

/// A loaded (and possibly attached) filter. Dropping it detaches and unloads it.
pub struct Filter {
    ebpf: Ebpf,
    /// The value of `SETTINGS` as last written: both sides and the one in force.
    sides: Box<Sides>,
    /// Slots of one side of the rules table.
    rule_slots: u32,
    /// The slots each side of the rules table holds rules in.
    side_slots: [Vec<u32>; 2],
    /// When the last switch of sides happened.
    switched: Option<std::time::Instant>,
    /// `FLOW_HINTS` mapped into this process, once used.
    hints: Option<HintWords>,
    /// The verifier's figures for the two programs, judging program first.
    verification: Vec<Verification>,
}

/// The verifier's limit of processed instructions per program (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const VERIFIER_LIMIT: u32 = 1_000_000;

/// The most processed instructions this project accepts for a program: a fifth of the
/// limit, because the verifier's work for one program moves between kernels and builds,
/// and a program that verifies only just is a gateway that may not come back after a
/// reboot or an upgrade.
pub const VERIFIED_INSNS_BOUND: u32 = 200_000;

/// What the verifier reported for one program this filter loaded.
#[derive(Clone, Debug)]
pub struct Verification {
    pub program: &'static str,
    /// Processed instructions, as the kernel reports them for the loaded program
    /// (`verified_insns` of `BPF_OBJ_GET_INFO_BY_FD`; `None` before 5.16).
    pub instructions: Option<u32>,
    /// Wall time of the load, which is the verifier's time.
    pub took: std::time::Duration,
}

/// How [`Filter::attach_pinned`] put the program on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link, in this mode.
    New(XdpMode),
    /// The link an earlier daemon pinned, its program replaced by this one.
    Adopted,
}

impl Filter {
    /// Loads the program with the table sizes and policy of a configuration.
    pub fn load_for(config: &Config) -> Result<Self, Error> {
        let mut f = Self::load_sized(
            config.rules_max,
            config.verdicts_max,
            config.hellos_max,
            None,
        )?;
        f.set_policy(config)?;
        Ok(f)
    }

    /// As [`Filter::load_for`], with the maps that outlive a daemon taken from the pins of
    /// `instance` where they exist (see [`Instance::prune_pins`]) and pinned there where they
    /// do not.
    pub fn load_pinned(config: &Config, instance: &Instance) -> Result<Self, Error> {
        let mut f = Self::load_sized(
            config.rules_max,
            config.verdicts_max,
            config.hellos_max,
            Some(instance),
        )?;
        f.set_policy(config)?;
        let mut layout: Array<&mut MapData, u32> = f.map_mut(names::LAYOUT)?;
        layout
            .set(0, LAYOUT_VERSION, 0)
            .map_err(|e| Error::map(names::LAYOUT, "writing the layout version", e))?;
        Ok(f)
    }

    /// Loads the program into the kernel with room for `rules_max` rules and default
    /// tables, for filters of their own (replay, tests).
    pub fn load(rules_max: u32) -> Result<Self, Error> {
        Self::load_sized(
            rules_max,
            filter_common::VERDICTS_DEFAULT_MAX,
            filter_common::HELLOS_DEFAULT_MAX,
            None,
        )
    }

    /// During a reload the old and new rule sets live side by side, so the rules map holds
    /// twice `rules_max`.
    fn load_sized(
        rules_max: u32,
        verdicts_max: u32,
        hellos_max: u32,
        pins: Option<&Instance>,
    ) -> Result<Self, Error> {
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(names::RULES, 2 * filter_common::rule_slots(rules_max))
            .map_max_entries(names::VERDICTS, verdicts_max)
            .map_max_entries(names::HELLOS, hellos_max);
        if let Some(instance) = pins {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, instance.pin(name));
            }
        }
        let mut ebpf = loader.load(OBJECT).map_err(|e| Error::Load {
            program: names::PROGRAM,
            detail: format!("the object: {}", error_chain(&e)),
        })?;
        // The judging program first: the header program tail-calls it through JUDGE.
        let mut verification = Vec::new();
        for name in [names::JUDGE_PROGRAM, names::PROGRAM] {
            let failed = |detail: String| Error::Load {
                program: name,
                detail,
            };
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| failed("missing from the object".into()))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| failed(e.to_string()))?;
            let start = std::time::Instant::now();
            program.load().map_err(|e| failed(verifier_message(&e)))?;
            verification.push(Verification {
                program: name,
                took: start.elapsed(),
                instructions: program
                    .info()
                    .ok()
                    .and_then(|i| i.verified_instruction_count()),
            });
        }
        let judge_fd = {
            let failed = |detail: String| Error::Load {
                program: names::JUDGE_PROGRAM,
                detail,
            };
            let judge: &Xdp = ebpf
                .program(names::JUDGE_PROGRAM)
                .and_then(|p| p.try_into().ok())
                .ok_or_else(|| failed("missing from the object".into()))?;
            judge
                .fd()
                .map_err(|e| failed(format!("its descriptor: {e}")))?
                .try_clone()
                .map_err(|e| failed(format!("its descriptor: {e}")))?
        };
        let map = ebpf
            .map_mut(names::JUDGE)
            .ok_or(Error::MapMissing { map: names::JUDGE })?;
        let mut judge_slot: ProgramArray<&mut MapData> =
            ProgramArray::try_from(map).map_err(|e| Error::map(names::JUDGE, "opening", e))?;
        judge_slot
            .set(0, &judge_fd, 0)
            .map_err(|e| Error::map(names::JUDGE, "setting the judging program", e))?;
        let mut settings = Settings {
            flow_idle_ns: crate::config::FLOW_IDLE_DEFAULT_SECS * 1_000_000_000,
            all_ports: 1,
            quic_ports: [crate::config::QUIC_PORT_DEFAULT, 0, 0, 0],
            ..Settings::default()
        };
        let mut filter = Self {
            ebpf,
            // Side 1 in force, empty, so that the first commit fills side 0.
            sides: Box::new(Sides {
                active: 1,
                ..Sides::EMPTY
            }),
            rule_slots: filter_common::rule_slots(rules_max),
            side_slots: [Vec::new(), Vec::new()],
            switched: None,
            hints: None,
            verification,
        };
        // Side 1 of everything starts in force, empty, so the first rule set fills side 0.
        settings.rules_base = filter.rule_slots;
        settings.apps_base = filter_common::APPS_MAX;
        filter.commit(settings, None)?;
        // Adopted tables come with their bits; rebuilding checks the mapping works too.
        filter.rebuild_hints()?;
        Ok(filter)
    }

    fn map_mut<'a, T>(&'a mut self, map: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let data = self.ebpf.map_mut(map).ok_or(Error::MapMissing { map })?;
        T::try_from(data).map_err(|e| Error::map(map, "opening", e))
    }

    fn map<'a, T>(&'a self, map: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let data = self.ebpf.map(map).ok_or(Error::MapMissing { map })?;
        T::try_from(data).map_err(|e| Error::map(map, "opening", e))
    }

    /// The kernel's id of a map of this filter, to open a handle of its own elsewhere.
    /// `name` is one of `filter_common::names::MAPS`.
    pub fn map_id(&self, map: &'static str) -> Result<u32, Error> {
        use aya::maps::{Map, MapError};
        let (Map::Array(data) | Map::HashMap(data) | Map::LruHashMap(data) | Map::RingBuf(data)) =
            self.ebpf.map(map).ok_or(Error::MapMissing { map })?
        else {
            let e = std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "only arrays, hash maps and rings are handled",
            );
            return Err(Error::map(map, "reading its id", MapError::IoError(e)));
        };
        data.info()
            .map(|i| i.id())
            .map_err(|e| Error::map(map, "reading its id", e))
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(names::PROGRAM)
            .and_then(|p| p.try_into().ok())
            .expect("the program was checked at load")
    }

    /// Runs one frame through the loaded program (`BPF_PROG_TEST_RUN`) with this filter's
    /// maps, so state carries over from frame to frame as on a live interface. Returns the
    /// XDP action.
    pub fn run_frame(&self, frame: &[u8]) -> Result<u32, Error> {
        self.run_frame_out(frame).map(|(action, _)| action)
    }

    /// As [`Filter::run_frame`], with the frame as the program left it (a `reject` turns
    /// it into the reset sent back to the client).
    pub fn run_frame_out(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        use aya::programs::{TestRun as _, TestRunOptions};
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..TestRunOptions::new()
        };
        // A refused run is a failed system call (or aya's complaint about its arguments).
        let result = self.program().test_run(opts).map_err(|e| {
            Error::system(
                "running a frame through the program (BPF_PROG_TEST_RUN)",
                std::io::Error::other(error_chain(&e)),
            )
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Whether the object has a map of this name.
    pub fn has_map(&self, name: &str) -> bool {
        self.ebpf.map(name).is_some()
    }

    /// What the verifier reported for each program when this filter loaded it.
    pub fn verification(&self) -> &[Verification] {
        &self.verification
    }

    /// The kernel's id of the loaded program.
    pub fn program_id(&self) -> Option<u32> {
        self.program().info().ok().map(|i| i.id())
    }

    /// Attaches to `iface` in `mode`; with `fallback`, a native attach that the driver
    /// refuses is retried in generic mode. Returns the mode in force. The attachment ends
    /// with the filter (tests, benchmarks); the daemon uses [`Filter::attach_pinned`].
    pub fn attach(&mut self, iface: &str, mode: XdpMode, fallback: bool) -> Result<XdpMode, Error> {
        self.attach_link(iface, mode, fallback)
            .map(|(_, mode)| mode)
    }

    fn attach_link(
        &mut self,
        iface: &str,
        mode: XdpMode,
        fallback: bool,
    ) -> Result<(XdpLinkId, XdpMode), Error> {
        let flags = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic => AyaXdpMode::Skb,
        };
        match self.program_mut().attach(iface, flags) {
            Ok(id) => Ok((id, mode)),
            Err(e) if mode == XdpMode::Native && fallback => {
                eprintln!(
                    "sni-filter: warning: native XDP on {iface} refused ({e}); falling back to generic mode as configured"
                );
                let id = self
                    .program_mut()
                    .attach(iface, AyaXdpMode::Skb)
                    .map_err(|e| Error::Attach {
                        iface: iface.into(),
                        reason: format!("generic XDP: {e}"),
                    })?;
                Ok((id, XdpMode::Generic))
            }
            Err(e) => Err(Error::Attach {
                iface: iface.into(),
                reason: format!(
                    "{} XDP attach failed: {}{}",
                    mode.name(),
                    error_chain(&e),
                    if mode == XdpMode::Native {
                        " (set generic_fallback = true or pass --allow-generic-fallback to accept generic mode)"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }

    /// Puts the program on `iface` through a link pinned under `instance`, so that it stays
    /// attached when this process ends. A link already pinned there (a filter left by an
    /// earlier daemon) is taken over: its program is replaced by this one in one step
    /// (`BPF_LINK_UPDATE`), with no moment without a filter.
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        mode: XdpMode,
        fallback: bool,
        instance: &Instance,
    ) -> Result<Attached, Error> {
        let pin = instance.link_pin(iface);
        let failed = |what: &str, e: &dyn std::fmt::Display| Error::Attach {
            iface: iface.into(),
            reason: format!("{what} {}: {e}", pin.display()),
        };
        if pin.exists() {
            let pinned =
                PinnedLink::from_pin(&pin).map_err(|e| failed("opening the link pinned at", &e))?;
            let link = XdpLink::try_from(FdLink::from(pinned))
                .map_err(|e| failed("the link pinned at", &e))?;
            let id = self.program_mut().attach_to_link(link).map_err(|e| {
                failed(
                    "replacing the program of the link pinned at",
                    &error_chain(&e),
                )
            })?;
            // The pin holds the link; this process's handle on it goes.
            drop(self.program_mut().take_link(id));
            return Ok(Attached::Adopted);
        }
        let (id, actual) = self.attach_link(iface, mode, fallback)?;
        let link = self
            .program_mut()
            .take_link(id)
            .map_err(|e| failed("taking the new link for", &e))?;
        let link = FdLink::try_from(link).map_err(|e| Error::Attach {
            iface: iface.into(),
            reason: format!(
                "the kernel attached XDP without a link ({e}), which cannot be pinned: the filter could not outlive the daemon"
            ),
        })?;
        link.pin(&pin)
            .map_err(|e| failed("pinning the link at", &e))?;
        Ok(Attached::New(actual))
    }

    /// Pins the tail-call table of this program, replacing the pin of the program it took
    /// over (whose table, unpinned, empties once no process holds it: call this only once
    /// this program is on every interface).
    pub fn pin_judge(&self, instance: &Instance) -> Result<(), Error> {
        let path = instance.pin(names::JUDGE);
        let _ = std::fs::remove_file(&path);
        self.ebpf
            .map(names::JUDGE)
            .ok_or(Error::MapMissing { map: names::JUDGE })?
            .pin(&path)
            .map_err(|e| Error::Pinned {
                reason: format!("pinning {}: {}", names::JUDGE, error_chain(&e)),
                path,
            })
    }

    /// The counters by reason, summed over every CPU.
    pub fn counters(&self) -> Result<Counters, Error> {
        CounterMaps::of(&self.ebpf)?.reasons()
    }

    /// The notes (`Note`), summed over every CPU, indexed by note.
    pub fn notes(&self) -> Result<Vec<u64>, Error> {
        CounterMaps::of(&self.ebpf)?.notes()
    }
}

/// An error and every error under it, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The verifier's log is long; its last lines say why the program was refused. The kernel
/// and what to do come with them: a refusal is a fact about this build on this kernel.
fn verifier_message(e: &aya::programs::ProgramError) -> String {
    let full = format!("{e:?}");
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        // For whoever changes the program: the whole log, which is long.
        let saved = std::env::var_os("SNI_FILTER_VERIFIER_LOG")
            .filter(|path| std::fs::write(path, &log).is_ok())
            .map(|path| format!("the whole log is in {}", path.to_string_lossy()));
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let kernel = crate::preflight::kernel_release().unwrap_or_else(|| "unknown".into());
        return format!(
            "the verifier of kernel {kernel} refused the program:\n{}\n\
             Nothing was attached or changed: a filter already running stays in force. This \
             build cannot filter on this kernel; keep the version that runs, and report the \
             lines above with the kernel version ({}).",
            tail.join("\n"),
            saved.unwrap_or_else(|| {
                "set SNI_FILTER_VERIFIER_LOG=FILE to save the whole log".into()
            })
        );
    }
    full
}
