//! What a verdict on a hello leads to: a blocked flow's standing verdict (and the client's
//! reset for `reject`), the app's counters, and the flow event.

use aya_ebpf::programs::XdpContext;
use filter_common::{
    Action, EVENT_ECH, EVENT_SNI_LATER_SEGMENT, EventAction, FlowKey, FlowTable, NO_APP, Note,
    Reason,
    hello::{WALK_ECH_SEEN, WALK_NAME_LATER, WALK_NAME_SEEN},
};

use crate::{
    counters::{self, Exit},
    flows,
    headers::Tcp,
};

/// The packet being judged; passed by reference because BPF functions take at most five
/// arguments.
pub struct Segment<'a> {
    pub ctx: &'a XdpContext,
    pub flow: &'a FlowKey,
    pub tcp: &'a Tcp,
    pub now: u64,
    /// The tables the flow may have entries in (`FlowTable::mask` bits); a table whose bit
    /// is clear is not looked up. In map memory, read at each use: flags in a register
    /// would split every path after them for the verifier.
    pub known: *const u8,
    /// The frame's length, as counted.
    pub frame_len: u32,
}

impl Segment<'_> {
    /// Whether the flow may have an entry in `table`.
    #[inline(always)]
    pub fn may_have(&self, table: FlowTable) -> bool {
        // SAFETY: a field of this CPU's `PENDING` value, valid while the packet is judged.
        unsafe { self.known.read_volatile() & table.mask() != 0 }
    }
}

/// The end of a hello: a blocked verdict is stored (and the client reset for `reject`),
/// a monitored one counted, and the event emitted.
pub fn conclude(seg: &Segment, reason: Reason) -> Exit {
    let (ctx, flow, tcp, now) = (seg.ctx, seg.flow, seg.tcp, seg.now);
    let Some(j) = crate::judging::judging() else {
        return Exit::of(Reason::InternalError);
    };
    let mut flags = 0;
    if j.walk.flags & WALK_ECH_SEEN != 0 {
        flags |= EVENT_ECH;
        if reason != Reason::HelloBlocked {
            counters::note(Note::EchSeen);
        }
    }
    if j.walk.flags & WALK_NAME_LATER != 0 {
        flags |= EVENT_SNI_LATER_SEGMENT;
    }
    match reason {
        Reason::HelloBlocked => {
            let (app, action) = (j.app, j.action);
            let action = Action::from_u8(action).unwrap_or(Action::Drop);
            flows::block(flow, app, action, now);
            counters::app_dropped(app, u64::from(seg.frame_len), true);
            // Monitor mode leaves the packet as it came: the event still says `reject`.
            if action == Action::Reject && crate::settings::monitoring() {
                report(seg, reason, app, EventAction::Reject, flags);
                return Exit::of(reason);
            }
            if action == Action::Reject {
                if crate::reset::answer_with_rst(ctx, tcp) {
                    counters::note(Note::ResetSent);
                    counters::app_reset(app);
                    report(seg, reason, app, EventAction::Reject, flags);
                    return Exit {
                        reason,
                        transmit: true,
                    };
                }
                counters::note(Note::ResetFailed);
            }
            report(seg, reason, app, EventAction::Drop, flags);
            Exit::of(reason)
        }
        Reason::HelloMonitored => {
            let app = j.monitored_app;
            counters::app_monitored(app);
            report(seg, reason, app, EventAction::Monitor, flags);
            Exit::of(reason)
        }
        Reason::HelloIncomplete => Exit::of(reason),
        _ => {
            if reason == Reason::UninspectableTableFull
                || crate::settings::settings().is_some_and(|s| s.trace_all != 0)
            {
                report(seg, reason, NO_APP, EventAction::Pass, flags);
            }
            Exit::of(reason)
        }
    }
}

/// Emits a flow event with the walker's last name (if one was read).
pub fn report(seg: &Segment, reason: Reason, app: u16, action: EventAction, flags: u8) {
    let traced = crate::settings::settings().is_some_and(|s| s.trace_all != 0);
    if action == EventAction::Pass && !reason.uninspectable() && !traced {
        return;
    }
    let Some(j) = crate::judging::judging() else {
        return;
    };
    let len = if j.walk.flags & WALK_NAME_SEEN != 0 {
        j.walk.name_len
    } else {
        0
    };
    let action = if action == EventAction::Pass && reason.uninspectable() {
        if crate::settings::settings().is_some_and(|s| s.uninspectable_drop != 0) {
            EventAction::Drop
        } else {
            action
        }
    } else {
        action
    };
    crate::events::emit(
        seg.ctx,
        seg.flow,
        app,
        action,
        reason,
        &j.walk.name,
        len,
        flags,
        seg.tcp.vlan,
    );
}
