//! Judging a whole ClientHello read from the CRYPTO stream: the program's walker reads
//! the names and the program's rule tables, matched here, decide.

use std::net::IpAddr;

use filter_common::{
    Action, AppScope, EVENT_ECH, NO_APP, Reason,
    hello::{HelloWalk, SCRATCH_LEN, Step, WALK_ECH_SEEN, walk_reason},
    name::NAME_BUF,
};

use crate::{
    Error,
    rules::{RuleSet, Tables},
};

/// What a name matched, as the program's `action_for_name` decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameVerdict {
    Blocked(u16, Action),
    Monitored(u16),
    /// An app matched whose rules exempt this client.
    Exempt,
    None,
}

/// Who sent a hello, where: for exemptions and scopes.
#[derive(Clone, Copy, Debug)]
pub struct Client {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan: u16,
}

/// The rules of a rule set in the program's table form, matched in userspace.
pub struct Matcher {
    set: RuleSet,
    tables: Tables,
    seed: u64,
}

impl Matcher {
    pub fn new(set: &RuleSet) -> Result<Self, Error> {
        let seed = 0x5155_4943_5345_4544;
        Ok(Self {
            tables: set.tables(seed)?,
            set: set.clone(),
            seed,
        })
    }

    pub fn app_names(&self) -> Vec<String> {
        self.set.apps.iter().map(|a| a.name.clone()).collect()
    }

    pub fn action_for_name(&self, name: &[u8], client: &Client) -> NameVerdict {
        let mut buf = [0u8; NAME_BUF];
        let len = name.len().min(filter_common::name::NAME_MAX);
        buf[..len].copy_from_slice(&name[..len]);
        let Some(rule) = filter_common::name::match_name(&buf, len, self.seed, &self.tables) else {
            return NameVerdict::None;
        };
        let Some(app) = self.set.apps.get(usize::from(rule.app)) else {
            return NameVerdict::None;
        };
        let scope = filter_common::app_scope(
            &app.policy(),
            || {
                app.interfaces
                    .iter()
                    .any(|i| crate::state::ifindex(i) == Some(client.ifindex))
            },
            || app.vlans.contains(&client.vlan),
            || app.exempt_sources.iter().any(|n| n.contains(&client.addr)),
        );
        match scope {
            AppScope::Applies => {}
            AppScope::Outside => return NameVerdict::None,
            AppScope::Exempt => return NameVerdict::Exempt,
        }
        match app.action {
            a @ (Action::Drop | Action::Reject) => NameVerdict::Blocked(rule.app, a),
            Action::Monitor => NameVerdict::Monitored(rule.app),
        }
    }
}

/// The verdict on a QUIC flow's ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// One of the hello reasons: `hello_blocked`, `hello_allowed`, `hello_no_sni`,
    /// `hello_monitored`, `hello_exempt`, `not_client_hello`, or an uninspectable one.
    pub reason: Reason,
    /// The app that blocked or monitored the flow, or `NO_APP`.
    pub app: u16,
    pub action: Action,
    /// The first server name read (the one that decided, when one did).
    pub name: Vec<u8>,
    /// `EVENT_*` bits.
    pub flags: u8,
    /// The connection ID whose keys opened the flow's Initials (the client's first choice),
    /// and the one the deciding Initial's header carried.
    pub key_dcid: Vec<u8>,
    pub dcid: Vec<u8>,
}

impl Verdict {
    pub(super) fn of(reason: Reason) -> Self {
        Self {
            reason,
            app: NO_APP,
            action: Action::Monitor,
            name: Vec::new(),
            flags: 0,
            key_dcid: Vec::new(),
            dcid: Vec::new(),
        }
    }
}

/// Walks a whole ClientHello message (as the CRYPTO stream carries it: no record layer)
/// with the program's walker, judging every server name with `matcher`.
pub fn judge_hello(hello: &[u8], matcher: &Matcher, client: &Client) -> Verdict {
    // The walker reads TLS records: wrap the message in handshake records.
    let mut stream = Vec::with_capacity(hello.len() + 5 * (hello.len() / 16384 + 1));
    for chunk in hello.chunks(1 << 14) {
        stream.extend_from_slice(&[0x16, 0x03, 0x01]);
        stream.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        stream.extend_from_slice(chunk);
    }
    let mut walk = HelloWalk::new();
    let mut buf = Box::new([0u8; SCRATCH_LEN]);
    let mut first_name: Option<Vec<u8>> = None;
    let mut monitored = NO_APP;
    let mut exempt = false;
    let mut end_step = Step::NeedMore;
    'windows: for window in stream.chunks(SCRATCH_LEN) {
        buf[..window.len()].copy_from_slice(window);
        let mut pos = 0u32;
        let end = window.len() as u32;
        loop {
            match walk.next_name(&buf, &mut pos, end) {
                Ok(()) => {
                    let name = walk.name[..usize::from(walk.name_len)].to_vec();
                    let decided = match matcher.action_for_name(&name, client) {
                        NameVerdict::Blocked(app, action) => Some((app, action)),
                        NameVerdict::Monitored(app) => {
                            if monitored == NO_APP {
                                monitored = app;
                            }
                            None
                        }
                        NameVerdict::Exempt => {
                            exempt = true;
                            None
                        }
                        NameVerdict::None => None,
                    };
                    if let Some((app, action)) = decided {
                        return Verdict {
                            app,
                            action,
                            name,
                            flags: ech_flag(&walk),
                            ..Verdict::of(Reason::HelloBlocked)
                        };
                    }
                    first_name.get_or_insert(name);
                }
                Err(Step::NeedMore) => continue 'windows,
                Err(step) => {
                    end_step = step;
                    break 'windows;
                }
            }
        }
    }
    // The CRYPTO stream held the whole message: a hello that ends before its declared
    // length, or that is no handshake, is malformed here.
    let end_step = match end_step {
        Step::NeedMore | Step::NotHandshake => Step::Malformed,
        step => step,
    };
    let mut v = Verdict::of(walk_reason(
        end_step,
        walk.flags,
        monitored != NO_APP,
        exempt,
    ));
    if v.reason == Reason::HelloMonitored {
        v.app = monitored;
    }
    v.name = first_name.unwrap_or_default();
    v.flags = ech_flag(&walk);
    v
}

fn ech_flag(walk: &HelloWalk) -> u8 {
    if walk.flags & WALK_ECH_SEEN != 0 {
        EVENT_ECH
    } else {
        0
    }
}
