//! Apps and their policies: what a match does (`Action`), and whether an app's rules apply
//! to a client (interface and VLAN scopes, source exemptions).

/// Apps per rule set. The app id is a `u16`, but an array of policies the program reads on
/// every match stays small: 255 apps is far beyond any city's list of banned applications.
pub const APPS_MAX: u32 = 256;

u8_enum! {
    /// What happens to a flow whose name matched an app's rules.
    pub enum Action {
        /// Count and log only.
        Monitor = 0 => "monitor",
        /// Drop silently.
        Drop = 1 => "drop",
        /// Drop, and answer the client with a TCP RST.
        Reject = 2 => "reject",
    }
}

/// Per-app policy, indexed by app id in the `APPS` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AppPolicy {
    /// An [`Action`] as `u8`.
    pub action: u8,
    /// 1 when the app is in use; 0 marks an unused slot.
    pub enabled: u8,
    /// `APP_*` bits.
    pub flags: u8,
    pub _pad: [u8; 5],
}

/// The app has source exemptions in `EXEMPT`.
pub const APP_HAS_EXEMPTIONS: u8 = 1;
/// The app applies only on the interfaces listed in `SCOPES`.
pub const APP_SCOPED_IFACES: u8 = 2;
/// The app applies only on the VLAN IDs listed in `SCOPES`.
pub const APP_SCOPED_VLANS: u8 = 4;
/// `ScopeKey::kind` of a key whose `value` is an interface index (`APP_SCOPED_IFACES`).
pub const SCOPE_IFACE: u8 = 1;
/// `ScopeKey::kind` of a key whose `value` is a VLAN ID (`APP_SCOPED_VLANS`).
pub const SCOPE_VLAN: u8 = 2;

/// Whether a matched app's rules apply to a client, decided in one order for the program
/// and the daemon's QUIC judge: the app in use, the client's interface and VLAN in the app's
/// scope, the client not exempted. Each side answers the scope and exemption questions from
/// its own tables; a question is asked only when the app's flags say it has an answer.
#[inline(always)]
pub fn app_scope(
    policy: &AppPolicy,
    iface_in_scope: impl FnOnce() -> bool,
    vlan_in_scope: impl FnOnce() -> bool,
    exempted: impl FnOnce() -> bool,
) -> AppScope {
    if policy.enabled == 0
        || (policy.flags & APP_SCOPED_IFACES != 0 && !iface_in_scope())
        || (policy.flags & APP_SCOPED_VLANS != 0 && !vlan_in_scope())
    {
        return AppScope::Outside;
    }
    if policy.flags & APP_HAS_EXEMPTIONS != 0 && exempted() {
        return AppScope::Exempt;
    }
    AppScope::Applies
}

/// What [`app_scope`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppScope {
    Applies,
    /// Not in use, or not on this interface or VLAN: as if no rule matched.
    Outside,
    /// The client is exempted: passed, and the hello counted `hello_exempt`.
    Exempt,
}

/// The data of an `EXEMPT` LPM-trie key: the prefix covers the app, the family, a zero
/// byte and then the address bits of the exempted network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExemptPrefix {
    /// The app id, big-endian so that it is the first bits of the prefix.
    pub app: [u8; 2],
    /// 4 or 6.
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}

impl ExemptPrefix {
    /// Bits of the key before the address.
    pub const HEADER_BITS: u32 = 32;
}

/// A key of the `SCOPES` set: an app and an interface index or VLAN ID it applies on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScopeKey {
    /// The app id, plus the side's `apps_base` as in `EXEMPT` keys.
    pub app: u16,
    /// `SCOPE_IFACE` or `SCOPE_VLAN`: what `value` is.
    pub kind: u8,
    pub _pad: u8,
    /// An interface index or a VLAN ID.
    pub value: u32,
}
