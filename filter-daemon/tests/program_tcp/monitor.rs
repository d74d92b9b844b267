//! `mode = "monitor"`, the whole filter's dry run: the same frames through a filter in each
//! mode, the same reasons counted, but in monitor mode every packet passes untouched, the
//! `dropped` figures stay still and `monitor_passed` counts what would have been dropped.

use filter_common::{EVENT_MONITOR, EventAction, Note, Reason};
use sni_filter::filter::Filter;
use sni_filter_lab::hello::IpPair;

use super::common::program::{Case, XDP_DROP, XDP_PASS, XDP_TX, case, load_with, reasons_moved};
use super::{banned_flow, chrome_name_last, counters, hello_frame, tcp};

/// A drop app, a reject app, and no uninspectable hello passing.
fn filter_in(mode: &str) -> Filter {
    load_with(
        mode,
        &format!(
            "[filter]\nmode = \"{mode}\"\nuninspectable = \"drop\"\n\
             [apps.tiktok]\naction = \"drop\"\ndomains = [\"tiktok.com\"]\n\
             [apps.bounce]\naction = \"reject\"\ndomains = [\"bounce.example\"]\n"
        ),
    )
    .0
}

/// What the frames of a case did: the last one's action and whether it left the program
/// unchanged, the reasons that rose, and how the drop and monitor figures moved.
#[derive(Debug, PartialEq)]
struct Outcome {
    action: u32,
    unchanged: bool,
    moved: Vec<(Reason, u64)>,
    dropped: u64,
    monitor_passed: u64,
    resets_sent: u64,
}

fn outcome(f: &Filter, frames: &[Vec<u8>]) -> Outcome {
    let (before, notes_before) = (counters(f), f.notes().unwrap());
    let (mut action, mut unchanged) = (0, true);
    for frame in frames {
        let (a, out) = f.run_frame_out(frame).expect("test run");
        (action, unchanged) = (a, out == *frame);
    }
    let (after, notes) = (counters(f), f.notes().unwrap());
    let dropped = |c: &[filter_common::Counter]| c.iter().map(|c| c.dropped).sum::<u64>();
    let note = |n: Note| notes[n as usize] - notes_before[n as usize];
    Outcome {
        action,
        unchanged,
        moved: reasons_moved(&before, &after),
        dropped: dropped(&after) - dropped(&before),
        monitor_passed: note(Note::MonitorPassed),
        resets_sent: note(Note::ResetSent),
    }
}

/// The cases, each with the reasons its frames count in either mode and the action
/// enforce mode takes on the last frame.
fn cases() -> Vec<Case> {
    let v4 = IpPair::v4_example();
    let (s, hello, later) = banned_flow(v4);
    let split = tcp(v4).frames_split(&chrome_name_last("www.tiktok.com"), &[600, 1200]);
    vec![
        case(
            "a banned hello",
            vec![hello_frame("www.tiktok.com")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1)],
        ),
        case(
            "a later packet of a blocked flow",
            vec![s.frame(&hello), later.frame(b"more")],
            XDP_DROP,
            &[(Reason::HelloBlocked, 1), (Reason::BlockedFlow, 1)],
        ),
        case(
            "a hello segment after a gap (uninspectable = drop)",
            vec![split[0].clone(), split[2].clone()],
            XDP_DROP,
            &[
                (Reason::HelloIncomplete, 1),
                (Reason::UninspectableOutOfOrder, 1),
            ],
        ),
        case(
            "a reject app's hello",
            vec![hello_frame("www.bounce.example")],
            XDP_TX,
            &[(Reason::HelloBlocked, 1)],
        ),
    ]
}

#[test]
fn monitor_mode_passes_untouched_what_enforce_drops_or_resets_counting_the_same_reasons() {
    let (enforce, monitor) = (filter_in("enforce"), filter_in("monitor"));
    for Case {
        name,
        frames,
        action: enforced,
        counted: moved,
        ..
    } in cases()
    {
        // Packets that would be dropped: every one of the case's but its allowed segments.
        let would_drop = moved
            .iter()
            .filter(|(r, _)| *r != Reason::HelloIncomplete)
            .map(|(_, n)| n)
            .sum::<u64>();
        let reset = u64::from(enforced == XDP_TX);
        assert_eq!(
            outcome(&enforce, &frames),
            Outcome {
                action: enforced,
                unchanged: enforced != XDP_TX,
                moved: moved.clone(),
                dropped: would_drop,
                monitor_passed: 0,
                resets_sent: reset,
            },
            "enforce: {name}"
        );
        assert_eq!(
            outcome(&monitor, &frames),
            Outcome {
                action: XDP_PASS,
                unchanged: true,
                moved,
                dropped: 0,
                monitor_passed: would_drop,
                resets_sent: 0,
            },
            "monitor: {name}"
        );
    }
}

#[test]
fn monitor_mode_events_keep_the_action_that_would_have_been_taken_and_say_monitor() {
    for (mode, marker) in [("enforce", 0), ("monitor", EVENT_MONITOR)] {
        let mut f = filter_in(mode);
        let _ = f.drain_events().unwrap();
        for c in cases() {
            for frame in &c.frames {
                f.run_frame(frame).unwrap();
            }
        }
        let events: Vec<(u8, u8, u8)> = f
            .drain_events()
            .unwrap()
            .iter()
            .map(|e| (e.action, e.reason, e.flags & EVENT_MONITOR))
            .collect();
        let drop = EventAction::Drop as u8;
        assert_eq!(
            events,
            [
                (drop, Reason::HelloBlocked as u8, marker),
                (drop, Reason::HelloBlocked as u8, marker),
                (drop, Reason::UninspectableOutOfOrder as u8, marker),
                (
                    EventAction::Reject as u8,
                    Reason::HelloBlocked as u8,
                    marker
                ),
            ],
            "{mode}: one event per flow, with its action, marked in monitor mode only"
        );
    }
}
