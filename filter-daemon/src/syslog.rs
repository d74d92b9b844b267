//! What the daemon reports, as records with a stable MSGID and structured data, and their
//! wire forms: RFC 5424 for remote servers, journald's native fields or RFC 3164 locally.
//! [`sink`] delivers them; [`Logger`] writes each record to stderr and hands it to the sink.

pub mod sink;

use std::{
    fmt::{self, Write as _},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The SD-ID records are built with (counters per reason: `REASON@32473`); [`rfc5424`] writes
/// [`Origin::enterprise`] (`[logging] sd_enterprise_number`) in place of 32473.
pub const SD_ID: &str = "sni-filter@32473";
/// The enterprise number after `@` in every SD-ID records are built with.
pub const SD_ENTERPRISE: &str = "32473";
/// RFC 5424 §6.3.2: SD-NAME (SD-IDs and parameter names) is at most 32 characters.
pub const SD_NAME_MAX: usize = 32;
/// RFC 5424 §6.2.5: APP-NAME is at most 48 printable ASCII characters.
pub const APP_NAME_MAX: usize = 48;
/// RFC 5424 §6.2.4: HOSTNAME is at most 255 printable ASCII characters.
const HOSTNAME_MAX: usize = 255;
/// Prefix of journal fields taken from structured data (`SNI_FILTER_APP=tiktok`).
const JOURNAL_PREFIX: &str = "SNI_FILTER_";

/// What a record is about; the name is its RFC 5424 MSGID, stable for SIEM rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgId {
    /// Counters by data-path reason, once per interval.
    Summary,
    /// Counters of one app, once per app and interval.
    AppSummary,
    /// One blocked, monitored or uninspectable flow.
    Flow,
    /// Flow events held back by the rate limit.
    Suppressed,
    /// The syslog sink itself: messages it could not send.
    Sink,
    /// Start, attach, reload, stop.
    Lifecycle,
    /// Warnings about the configuration and rule lists.
    Config,
    /// Idle state removed from the program's tables.
    Sweep,
}

impl MsgId {
    pub const ALL: [MsgId; 8] = [
        MsgId::Summary,
        MsgId::AppSummary,
        MsgId::Flow,
        MsgId::Suppressed,
        MsgId::Sink,
        MsgId::Lifecycle,
        MsgId::Config,
        MsgId::Sweep,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            MsgId::Summary => "SUMMARY",
            MsgId::AppSummary => "APP_SUMMARY",
            MsgId::Flow => "FLOW",
            MsgId::Suppressed => "SUPPRESSED",
            MsgId::Sink => "SINK",
            MsgId::Lifecycle => "LIFECYCLE",
            MsgId::Config => "CONFIG",
            MsgId::Sweep => "SWEEP",
        }
    }
}

/// RFC 5424 §6.2.1 severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

/// A syslog facility (RFC 5424 §6.2.1), by its usual name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

impl Facility {
    /// The names syslog daemons use, in code order (`local0` is 16).
    const NAMES: [&'static str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    pub const DAEMON: Facility = Facility(3);

    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Facility(i as u8))
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[usize::from(self.0)]
    }

    pub fn code(self) -> u8 {
        self.0
    }

    /// Every accepted name, for error messages.
    pub fn names() -> String {
        Self::NAMES.join(", ")
    }
}

/// One SD-ELEMENT: an SD-ID and its parameters, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// One thing the daemon reports.
#[derive(Clone, Debug)]
pub struct Record {
    pub msgid: MsgId,
    pub severity: Severity,
    /// When it happened (for a flow, when the program judged it).
    pub time: SystemTime,
    /// The human line: the record's stderr line and its syslog MSG.
    pub text: String,
    /// The record's own parameters (under [`SD_ID`]), then further elements.
    pub sd: Vec<SdElement>,
    /// Whether stderr shows it too (quiet repeats, such as unchanged app counters, do not).
    pub on_stderr: bool,
}

impl Record {
    pub fn new(msgid: MsgId, severity: Severity, text: impl Into<String>) -> Self {
        Self {
            msgid,
            severity,
            time: SystemTime::now(),
            text: text.into(),
            sd: vec![SdElement {
                id: SD_ID.into(),
                params: Vec::new(),
            }],
            on_stderr: true,
        }
    }

    /// Adds a parameter to the record's own element.
    #[must_use]
    pub fn param(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.sd[0].params.push((name.into(), value.to_string()));
        self
    }

    #[must_use]
    pub fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    /// Adds an element `NAME@32473` (for example one per reason of a summary).
    #[must_use]
    pub fn element(mut self, name: &str, params: Vec<(String, String)>) -> Self {
        self.sd.push(SdElement {
            id: format!("{name}@{SD_ENTERPRISE}"),
            params,
        });
        self
    }

    /// The value of a parameter of the record's own element.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.sd[0]
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Who sends: the fields of the RFC 5424 header that do not change between records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub facility: Facility,
    pub hostname: String,
    pub app_name: String,
    pub procid: u32,
    pub enterprise: u32,
}

impl Origin {
    pub fn new(facility: Facility, app_name: &str, enterprise: u32) -> Self {
        Self {
            facility,
            hostname: hostname(),
            app_name: app_name.into(),
            procid: std::process::id(),
            enterprise,
        }
    }

    fn pri(&self, severity: Severity) -> u16 {
        u16::from(self.facility.code()) * 8 + severity as u16
    }
}

/// This machine's name as RFC 5424 allows it (printable ASCII), or `-`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a writable buffer of the given length; gethostname NUL-terminates within it
    // when the name fits, and the last byte stays 0 otherwise.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name: String = buf[..len]
        .iter()
        .take(HOSTNAME_MAX)
        .map(|&b| {
            if b.is_ascii_graphic() {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect();
    if rc != 0 || name.is_empty() {
        "-".into()
    } else {
        name
    }
}

/// `2024-05-01T12:00:00.123456Z`: RFC 3339 in UTC with microseconds (RFC 5424 §6.2.3).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian; H. Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
pub fn escape_param_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An SD-NAME as RFC 5424 allows it: printable ASCII without `=`, space, `]` and `"`, at
/// most 32 characters. Names are the program's own, so this only guards against mistakes.
fn sd_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(SD_NAME_MAX)
        .collect()
}

/// Control characters and line breaks in a MSG or a stderr line become `?`: the text of a
/// record never spans lines.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A header field as RFC 5424 allows it: printable ASCII, bounded, `-` when empty.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v.chars().filter(char::is_ascii_graphic).take(max).collect();
    if s.is_empty() { "-".into() } else { s }
}

/// `[ID NAME="VALUE" ...]...` (`-` without elements), `ID@32473` written `ID@{enterprise}`.
pub fn structured_data(sd: &[SdElement], enterprise: u32) -> String {
    if sd.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    for e in sd {
        out.push('[');
        let id = match e.id.strip_suffix(SD_ENTERPRISE) {
            Some(name) if name.ends_with('@') => format!("{name}{enterprise}"),
            _ => e.id.clone(),
        };
        out.push_str(&sd_name(&id));
        for (name, value) in &e.params {
            let _ = write!(out, " {}=\"{}\"", sd_name(name), escape_param_value(value));
        }
        out.push(']');
    }
    out
}

/// The record as an RFC 5424 message (no framing, no trailing newline):
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
pub fn rfc5424(origin: &Origin, r: &Record) -> String {
    format!(
        "<{}>1 {} {} {} {} {} {} {}",
        origin.pri(r.severity),
        rfc3339(r.time),
        header_field(&origin.hostname, HOSTNAME_MAX),
        header_field(&origin.app_name, APP_NAME_MAX),
        origin.procid,
        r.msgid.name(),
        structured_data(&r.sd, origin.enterprise),
        one_line(&r.text)
    )
}

/// The record as the local syslog daemon reads `/dev/log` (RFC 3164, as glibc's `syslog()`
/// writes it): `<PRI>Mmm dd hh:mm:ss APP[PID]: MSGID TEXT`, in local time.
pub fn rfc3164(origin: &Origin, r: &Record) -> String {
    let pri = origin.pri(r.severity);
    let time = local_bsd_time(r.time);
    let app = header_field(&origin.app_name, APP_NAME_MAX);
    let msgid = r.msgid.name();
    format!(
        "<{pri}>{time} {app}[{}]: {msgid}: {}",
        origin.procid,
        one_line(&r.text)
    )
}

/// `Mmm dd hh:mm:ss` in local time, the day space-padded (RFC 3164 §4.1.2).
fn local_bsd_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let time: libc::time_t = secs.try_into().unwrap_or(0);
    // SAFETY: tm is plain data that localtime_r fills; both pointers are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above; localtime_r is the thread-safe variant.
    let ok = !unsafe { libc::localtime_r(&raw const time, &raw mut tm) }.is_null();
    if !ok {
        return "Jan  1 00:00:00".into();
    }
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[usize::try_from(tm.tm_mon).unwrap_or(0).min(11)],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// A journal field name from an SD name: upper case, `[A-Z0-9_]` only.
fn journal_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Appends one field in journald's native protocol: `NAME=value\n`, or for a value with a
/// newline `NAME\n`, its length as 64-bit little-endian, the value and `\n`.
fn journal_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

/// The record as one datagram of journald's native protocol: `MESSAGE`, `PRIORITY`,
/// `SYSLOG_IDENTIFIER`, `SYSLOG_FACILITY`, `SYSLOG_PID`, and every structured parameter as
/// a field of its own (`SNI_FILTER_APP=tiktok`; elements other than the record's own are
/// prefixed with their name: `SNI_FILTER_HELLO_BLOCKED_PACKETS=3`).
pub fn journal(origin: &Origin, r: &Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    journal_field(&mut out, "MESSAGE", &r.text);
    journal_field(&mut out, "PRIORITY", &(r.severity as u8).to_string());
    journal_field(&mut out, "SYSLOG_IDENTIFIER", &origin.app_name);
    journal_field(
        &mut out,
        "SYSLOG_FACILITY",
        &origin.facility.code().to_string(),
    );
    journal_field(&mut out, "SYSLOG_PID", &origin.procid.to_string());
    journal_field(&mut out, "SNI_FILTER_MSGID", r.msgid.name());
    journal_field(&mut out, "SNI_FILTER_TIME", &rfc3339(r.time));
    for (i, e) in r.sd.iter().enumerate() {
        let element = if i == 0 {
            String::new()
        } else {
            let name = e.id.split('@').next().unwrap_or_default();
            format!("{}_", journal_name(name))
        };
        for (name, value) in &e.params {
            let field = format!("{JOURNAL_PREFIX}{element}{}", journal_name(name));
            journal_field(&mut out, &field, value);
        }
    }
    out
}

/// Writes each record to stderr (as `sni-filter: TEXT`, the daemon's lines of old) and
/// hands it to the syslog sink, which never blocks.
pub struct Logger {
    stderr: bool,
    sink: Option<sink::Sink>,
}

impl Logger {
    pub fn new(stderr: bool, sink: Option<sink::Sink>) -> Self {
        Self { stderr, sink }
    }

    pub fn emit(&self, r: Record) {
        if self.stderr && r.on_stderr {
            eprintln!("sni-filter: {}", r.text);
        }
        if let Some(s) = &self.sink {
            s.send(r);
        }
    }

    pub fn sink(&self) -> Option<&sink::Sink> {
        self.sink.as_ref()
    }

    /// Swaps in another sink (after a reload) and returns the previous one.
    pub fn replace(&mut self, stderr: bool, sink: Option<sink::Sink>) -> Option<sink::Sink> {
        self.stderr = stderr;
        std::mem::replace(&mut self.sink, sink)
    }

    /// Sends what is queued, for at most `grace`, and stops the sink.
    pub async fn close(self, grace: Duration) {
        if let Some(s) = self.sink {
            s.close(grace).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SD_ENTERPRISE_DEFAULT, SD_ENTERPRISE_MAX};

    fn origin() -> Origin {
        Origin {
            facility: Facility::from_name("local4").unwrap(),
            hostname: "gw1".into(),
            app_name: "sni-filter".into(),
            procid: 4242,
            enterprise: SD_ENTERPRISE_DEFAULT,
        }
    }

    fn at(secs: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day of a century year), 23:59:59.999999.
        assert_eq!(
            rfc3339(at(951_868_799, 999_999)),
            "2000-02-29T23:59:59.999999Z"
        );
        assert_eq!(
            rfc3339(at(1_714_564_800, 123_456)),
            "2024-05-01T12:00:00.123456Z"
        );
        assert_eq!(rfc3339(at(4_107_542_400, 1)), "2100-03-01T00:00:00.000001Z");
    }

    #[test]
    fn param_values_escape_quote_backslash_and_bracket() {
        assert_eq!(escape_param_value(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
        assert_eq!(escape_param_value("plain"), "plain");
    }

    #[test]
    fn a_record_formats_as_rfc5424() {
        let r = Record::new(
            MsgId::Flow,
            Severity::Notice,
            "event action=drop app=tiktok",
        )
        .at(at(1_714_564_800, 5))
        .param("app", "tiktok")
        .param("sni", r#"we"ird]\name"#);
        // local4 (20) * 8 + notice (5) = 165.
        assert_eq!(
            rfc5424(&origin(), &r),
            r#"<165>1 2024-05-01T12:00:00.000005Z gw1 sni-filter 4242 FLOW [sni-filter@32473 app="tiktok" sni="we\"ird\]\\name"] event action=drop app=tiktok"#
        );
    }

    #[test]
    fn further_elements_carry_the_enterprise_number_and_text_stays_on_one_line() {
        let r = Record::new(MsgId::Summary, Severity::Info, "two\nlines")
            .at(at(0, 0))
            .param("interval_secs", 60)
            .element("hello_blocked", vec![("packets".into(), "3".into())]);
        let line = rfc5424(&origin(), &r);
        assert!(
            line.ends_with(
                r#"SUMMARY [sni-filter@32473 interval_secs="60"][hello_blocked@32473 packets="3"] two?lines"#
            ),
            "{line}"
        );
        assert_eq!(structured_data(&[], SD_ENTERPRISE_DEFAULT), "-");
    }

    #[test]
    fn the_configured_enterprise_number_names_every_sd_id() {
        let r = Record::new(MsgId::Summary, Severity::Info, "s")
            .at(at(0, 0))
            .param("interval_secs", 60)
            .element("hello_blocked", vec![("packets".into(), "3".into())]);
        let origin = Origin {
            enterprise: 64_999,
            ..origin()
        };
        let line = rfc5424(&origin, &r);
        assert!(
            line.ends_with(
                r#"SUMMARY [sni-filter@64999 interval_secs="60"][hello_blocked@64999 packets="3"] s"#
            ),
            "{line}"
        );
        assert!(!line.contains("32473"), "{line}");
        // An element named by someone else keeps its SD-ID as it is.
        let other = SdElement {
            id: "origin".into(),
            params: vec![("ip".into(), "192.0.2.1".into())],
        };
        assert_eq!(
            structured_data(&[other], 64_999),
            r#"[origin ip="192.0.2.1"]"#
        );
    }

    #[test]
    fn local_lines_read_like_glibc_syslog() {
        let r = Record::new(MsgId::Lifecycle, Severity::Info, "started");
        let line = rfc3164(&origin(), &r);
        // local4 (20) * 8 + info (6) = 166.
        assert!(line.starts_with("<166>"), "{line}");
        assert!(
            line.ends_with(" sni-filter[4242]: LIFECYCLE: started"),
            "{line}"
        );
        // `<166>Mmm dd hh:mm:ss ` is 5 + 16 bytes.
        assert_eq!(line.as_bytes()[5 + 15], b' ', "{line}");
    }

    #[test]
    fn journal_datagrams_carry_native_and_structured_fields() {
        let r = Record::new(MsgId::Flow, Severity::Notice, "event x")
            .param("app", "tiktok")
            .param("note", "a\nb")
            .element("hello_blocked", vec![("packets".into(), "3".into())]);
        let d = journal(&origin(), &r);
        let text = String::from_utf8_lossy(&d);
        for field in [
            "MESSAGE=event x\n",
            "PRIORITY=5\n",
            "SYSLOG_IDENTIFIER=sni-filter\n",
            "SYSLOG_FACILITY=20\n",
            "SYSLOG_PID=4242\n",
            "SNI_FILTER_MSGID=FLOW\n",
            "SNI_FILTER_APP=tiktok\n",
            "SNI_FILTER_HELLO_BLOCKED_PACKETS=3\n",
        ] {
            assert!(text.contains(field), "{field:?} missing in {text:?}");
        }
        // A value with a newline uses the binary form: name, newline, length, value.
        let mut binary = b"SNI_FILTER_NOTE\n".to_vec();
        binary.extend_from_slice(&3u64.to_le_bytes());
        binary.extend_from_slice(b"a\nb\n");
        assert!(d.windows(binary.len()).any(|w| w == binary));
    }

    #[test]
    fn facilities_and_msgids_follow_the_rfc() {
        assert_eq!(Facility::from_name("kern").unwrap().code(), 0);
        assert_eq!(Facility::from_name("daemon"), Some(Facility::DAEMON));
        assert_eq!(Facility::from_name("local7").unwrap().code(), 23);
        assert_eq!(Facility::from_name("local8"), None);
        for m in MsgId::ALL {
            assert!(m.name().len() <= SD_NAME_MAX && m.name().is_ascii());
        }
    }

    #[test]
    fn every_reason_fits_an_sd_id() {
        // Summaries carry one element per reason, named `REASON@32473`.
        for r in filter_common::Reason::ALL {
            let id = format!("{}@{SD_ENTERPRISE}", r.name());
            assert!(id.len() <= SD_NAME_MAX, "{id} is longer than {SD_NAME_MAX}");
            // ... and so does the largest enterprise number the configuration accepts.
            let id = format!("{}@{SD_ENTERPRISE_MAX}", r.name());
            assert!(id.len() <= SD_NAME_MAX, "{id} is longer than {SD_NAME_MAX}");
        }
    }
}
