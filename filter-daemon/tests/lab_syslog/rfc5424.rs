//! A strict RFC 5424 parser: what a SIEM's parser expects, without regexes; and its test,
//! that it refuses what the RFC does not allow.

use std::collections::BTreeMap;

/// One parsed RFC 5424 message.
#[derive(Debug)]
pub struct Message {
    pub pri: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// SD-ID → parameters, in order of appearance.
    pub sd: BTreeMap<String, Vec<(String, String)>>,
    pub msg: String,
}

impl Message {
    /// A parameter of an element.
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        self.sd
            .get(id)?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter of the daemon's own element.
    pub fn own(&self, name: &str) -> Option<&str> {
        self.param("sni-filter@32473", name)
    }

    pub fn number(&self, name: &str) -> u64 {
        self.own(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{name} is not a number in {self:?}"))
    }
}

/// `1*max` characters of PRINTUSASCII (RFC 5424 §6), up to the next space.
pub fn header_field<'a>(s: &mut &'a str, what: &str, max: usize) -> Result<&'a str, String> {
    let end = s.find(' ').ok_or(format!("no space after {what}"))?;
    let field = &s[..end];
    if field.is_empty() || field.len() > max || !field.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("{what} {field:?} is not 1..={max} printable ASCII"));
    }
    *s = &s[end + 1..];
    Ok(field)
}

pub fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// FULL-DATE "T" FULL-TIME of RFC 5424 §6.2.3 (RFC 3339 without leap seconds); this daemon
/// also promises UTC and microseconds.
pub fn check_timestamp(t: &str) -> Result<(), String> {
    let bad = || format!("timestamp {t:?} is not RFC 3339 UTC with microseconds");
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let ok_date = d.len() == 3
        && digits(d[0], 4)
        && digits(d[1], 2)
        && digits(d[2], 2)
        && (1..=12).contains(&d[1].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&d[2].parse::<u8>().unwrap_or(0));
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let (hms, frac) = time.split_once('.').ok_or_else(bad)?;
    let h: Vec<&str> = hms.split(':').collect();
    let ok_time = h.len() == 3
        && h.iter().all(|p| digits(p, 2))
        && h[0] < "24"
        && h[1] < "60"
        && h[2] < "60"
        && digits(frac, 6);
    if ok_date && ok_time {
        Ok(())
    } else {
        Err(bad())
    }
}

/// SD-NAME: 1 to 32 PRINTUSASCII except `=`, space, `]` and `"`.
pub fn sd_name<'a>(s: &mut &'a str) -> Result<&'a str, String> {
    let end = s.find(['=', ' ', ']', '"']).unwrap_or(s.len());
    let name = &s[..end];
    if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(format!("SD-NAME {name:?} is not 1..=32 printable ASCII"));
    }
    *s = &s[end..];
    Ok(name)
}

/// STRUCTURED-DATA: `-` or one or more `[SD-ID *(SP NAME="VALUE")]`, where `"`, `\` and `]`
/// inside a value are escaped with `\` (RFC 5424 §6.3).
pub fn structured_data(s: &mut &str) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
    let mut sd = BTreeMap::new();
    if let Some(rest) = s.strip_prefix('-') {
        *s = rest;
        return Ok(sd);
    }
    while let Some(rest) = s.strip_prefix('[') {
        *s = rest;
        let id = sd_name(s)?.to_owned();
        if !id.contains('@') {
            return Err(format!("SD-ID {id} is not NAME@NUMBER"));
        }
        let mut params = Vec::new();
        loop {
            if let Some(rest) = s.strip_prefix(']') {
                *s = rest;
                break;
            }
            *s = s
                .strip_prefix(' ')
                .ok_or(format!("expected space or ] in {id}"))?;
            let name = sd_name(s)?.to_owned();
            *s = s
                .strip_prefix("=\"")
                .ok_or(format!("expected =\" after {name}"))?;
            let mut value = String::new();
            let mut chars = s.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("unterminated value of {name}")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in {name}")),
                    },
                    Some((_, ']')) => return Err(format!("unescaped ] in {name}")),
                    Some((_, c)) => value.push(c),
                }
            };
            *s = &s[end + 1..];
            params.push((name, value));
        }
        if sd.insert(id.clone(), params).is_some() {
            return Err(format!("SD-ID {id} twice"));
        }
    }
    if sd.is_empty() {
        return Err("no STRUCTURED-DATA".into());
    }
    Ok(sd)
}

/// SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG] (RFC 5424 §6).
pub fn parse(line: &str) -> Result<Message, String> {
    let mut s = line
        .strip_prefix('<')
        .ok_or("no PRI: the line does not start with <")?;
    let close = s.find('>').ok_or("PRI is not closed")?;
    let pri_text = &s[..close];
    let pri: u8 = pri_text.parse().map_err(|_| format!("PRI {pri_text:?}"))?;
    if !(1..=3).contains(&pri_text.len())
        || pri > 191
        || (pri_text.len() > 1 && pri_text.starts_with('0'))
    {
        return Err(format!("PRI {pri_text:?} out of range"));
    }
    s = &s[close + 1..];
    s = s.strip_prefix("1 ").ok_or("VERSION is not 1")?;
    let timestamp = header_field(&mut s, "TIMESTAMP", 64)?.to_owned();
    check_timestamp(&timestamp)?;
    let hostname = header_field(&mut s, "HOSTNAME", 255)?.to_owned();
    let app_name = header_field(&mut s, "APP-NAME", 48)?.to_owned();
    let procid = header_field(&mut s, "PROCID", 128)?.to_owned();
    let msgid = header_field(&mut s, "MSGID", 32)?.to_owned();
    let sd = structured_data(&mut s)?;
    let msg = match s {
        "" => String::new(),
        rest => rest
            .strip_prefix(' ')
            .ok_or("no space before MSG")?
            .to_owned(),
    };
    Ok(Message {
        pri,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        sd,
        msg,
    })
}

#[test]
pub fn the_parser_is_strict() {
    let good = r#"<165>1 2024-05-01T12:00:00.000005Z gw1 sni-filter 42 FLOW [sni-filter@32473 app="tiktok" sni="a\"b\\c\]d"][x@32473 k="v"] text here"#;
    let m = parse(good).unwrap();
    assert_eq!(
        (m.pri, m.msgid.as_str(), m.msg.as_str()),
        (165, "FLOW", "text here")
    );
    assert_eq!(m.own("sni"), Some(r#"a"b\c]d"#));
    assert_eq!(m.param("x@32473", "k"), Some("v"));
    for bad in [
        "<192>1 2024-05-01T12:00:00.000005Z h a 1 M -",
        "<13>2 2024-05-01T12:00:00.000005Z h a 1 M -",
        "<13>1 2024-05-01 12:00:00 h a 1 M -",
        "<13>1 2024-05-01T12:00:00Z h a 1 M -",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x@1 k=\"a]b\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x@1 k=\"a\\qb\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 M [x k=\"v\"]",
        "<13>1 2024-05-01T12:00:00.000005Z h a 1 MSGID_LONGER_THAN_THIRTY_TWO_CHARS -",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad}");
    }
}
