//! The flow tables of a loaded filter kept in order: idle reassembly states and blocked
//! verdicts swept, the `FLOW_HINTS` bits rebuilt over a shared mapping, events drained.

use aya::maps::{Array, HashMap, MapData, RingBuf};
use filter_common::{
    BlockedFlow, Event, FlowKey, FlowTable, HINT_WORDS, flow_hash,
    hello::{HELLO_CONFLICT_IDLE_NS, HELLO_IDLE_NS, HelloFlow},
    hint_bit, names,
};

use super::Filter;
use crate::Error;

impl Filter {
    /// Takes every event the program has written since the last call.
    pub fn drain_events(&mut self) -> Result<Vec<Event>, Error> {
        let mut ring: RingBuf<&mut MapData> = self.map_mut(names::EVENTS)?;
        let mut events = Vec::new();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the program writes whole `Event` records; read unaligned from the ring.
                events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
            }
        }
        Ok(events)
    }

    /// Removes reassembly states and blocked verdicts that went idle (the program forgets
    /// them when it meets them again; this frees the table for flows it never meets again).
    /// Returns how many of each were removed.
    pub fn sweep(&mut self) -> Result<(usize, usize), Error> {
        let now = monotonic_ns();
        let idle = self.settings().flow_idle_ns;
        let mut hellos: HashMap<&mut MapData, FlowKey, HelloFlow> = self.map_mut(names::HELLOS)?;
        let stale: Vec<FlowKey> = hellos
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, h)| {
                let limit = if h.conflict != 0 {
                    HELLO_CONFLICT_IDLE_NS
                } else {
                    HELLO_IDLE_NS
                };
                now.saturating_sub(h.touched_ns) > limit
            })
            .map(|(k, _)| k)
            .collect();
        for k in &stale {
            let _ = hellos.remove(k);
        }
        let mut verdicts: HashMap<&mut MapData, FlowKey, BlockedFlow> =
            self.map_mut(names::VERDICTS)?;
        let expired: Vec<FlowKey> = verdicts
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| now.saturating_sub(v.last_ns) > idle)
            .map(|(k, _)| k)
            .collect();
        for k in &expired {
            let _ = verdicts.remove(k);
        }
        self.rebuild_hints()?;
        Ok((stale.len(), expired.len()))
    }

    /// Rebuilds the side of `FLOW_HINTS` not in force from the tables' entries, then puts it
    /// in force (see the program's `hints.rs` for why no entry loses its bit).
    pub fn rebuild_hints(&mut self) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        let side_map: Array<&MapData, u32> = self.map(names::HINT_SIDE)?;
        let side = side_map.get(&0, 0).unwrap_or(0) & 1;
        let other = side ^ 1;
        let words = HINT_WORDS as usize;
        let mut bits = Vec::new();
        {
            let hints = self.hints()?;
            for w in &hints.words()[other as usize * words..(other as usize + 1) * words] {
                w.store(0, SeqCst);
            }
        }
        // After the clear: an entry the program adds from now on sets its own bit here.
        let mut mark = |table, keys: &mut dyn Iterator<Item = FlowKey>| {
            bits.extend(keys.map(|k| hint_bit(flow_hash(&k), table) as usize));
        };
        let verdicts: HashMap<&MapData, FlowKey, BlockedFlow> = self.map(names::VERDICTS)?;
        mark(
            FlowTable::Verdicts,
            &mut verdicts.keys().filter_map(Result::ok),
        );
        let hellos: HashMap<&MapData, FlowKey, HelloFlow> = self.map(names::HELLOS)?;
        mark(FlowTable::Hellos, &mut hellos.keys().filter_map(Result::ok));
        let opening: HashMap<&MapData, FlowKey, u32> = self.map(names::OPENING)?;
        mark(
            FlowTable::Opening,
            &mut opening.keys().filter_map(Result::ok),
        );
        let hints = self.hints()?;
        for bit in bits {
            hints.words()[other as usize * words + bit / 64].fetch_or(1 << (bit % 64), SeqCst);
        }
        let mut side_map: Array<&mut MapData, u32> = self.map_mut(names::HINT_SIDE)?;
        side_map
            .set(0, other, 0)
            .map_err(|e| Error::map(names::HINT_SIDE, "switching sides", e))
    }

    /// `FLOW_HINTS`, mapped into this process once.
    fn hints(&mut self) -> Result<&HintWords, Error> {
        let hints = if let Some(hints) = self.hints.take() {
            hints
        } else {
            use aya::maps::Map;
            use std::os::fd::{AsFd as _, AsRawFd as _};
            let Some(Map::Array(data)) = self.ebpf.map(names::FLOW_HINTS) else {
                return Err(Error::MapMissing {
                    map: names::FLOW_HINTS,
                });
            };
            HintWords::map(data.fd().as_fd().as_raw_fd())?
        };
        Ok(self.hints.insert(hints))
    }
}

/// Both sides of `FLOW_HINTS` (an mmapable array), mapped shared: the daemon's atomic
/// operations and the program's act on the same words.
pub(super) struct HintWords {
    ptr: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
}

impl HintWords {
    const LEN: usize = 2 * HINT_WORDS as usize;

    fn map(fd: std::os::fd::RawFd) -> Result<Self, Error> {
        // SAFETY: a shared mapping of the map's data, of the size the map has (two sides of
        // HINT_WORDS u64 values, a multiple of the page size).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        let failed = |e| Error::system(format!("mapping {} into memory", names::FLOW_HINTS), e);
        if p == libc::MAP_FAILED {
            return Err(failed(std::io::Error::last_os_error()));
        }
        std::ptr::NonNull::new(p.cast())
            .map(|ptr| Self { ptr })
            .ok_or_else(|| failed(std::io::Error::other("mapped at address 0")))
    }

    fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: LEN words mapped for the life of self, 8-byte aligned (page aligned).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), Self::LEN) }
    }
}

impl Drop for HintWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), Self::LEN * 8) };
    }
}

// SAFETY: the words are atomics; the mapping is shared with the kernel, not with Rust code.
unsafe impl Send for HintWords {}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    // Both fields are non-negative for CLOCK_MONOTONIC.
    ts.tv_sec.unsigned_abs() * 1_000_000_000 + ts.tv_nsec.unsigned_abs()
}
