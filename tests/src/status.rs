//! `sni-filter status` read back into numbers, so tests can assert that the counters an
//! operator sees moved: the interfaces, apps and reasons tables and the `also counted` notes.

use std::collections::BTreeMap;

use filter_common::{Note, Reason};

/// Units `status` prints after byte counts ("2.8 KiB"): glued to the number when read.
const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];

/// One row of a table: its first column, and every column by its header name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusRow {
    pub key: String,
    pub cells: BTreeMap<String, String>,
}

impl StatusRow {
    /// A column as a count (0 when not a whole number, e.g. "2.8 KiB").
    ///
    /// # Panics
    /// When the row has no such column: a renamed or removed counter must fail the test that
    /// reads it, not read as a counter that did not move.
    pub fn count(&self, column: &str) -> u64 {
        self.cell(column).parse().unwrap_or(0)
    }

    /// A column as printed.
    ///
    /// # Panics
    /// When the row has no such column.
    pub fn text(&self, column: &str) -> &str {
        self.cell(column)
    }

    fn cell(&self, column: &str) -> &str {
        self.cells.get(column).map_or_else(
            || {
                panic!(
                    "status row {}: no column {column:?}; its columns: {:?}",
                    self.key,
                    self.cells.keys().collect::<Vec<_>>()
                )
            },
            String::as_str,
        )
    }
}

/// The tables and notes of one `sni-filter status` output.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Rows of the table headed `interface` (mode, ipv4, ipv6, other, vlan, dropped).
    pub interfaces: Vec<StatusRow>,
    /// Rows of the table headed `app` (action, enabled, rules, flows, dropped, bytes, resets).
    pub apps: Vec<StatusRow>,
    /// Rows of the table headed `reason` (packets, dropped, bytes); only non-zero reasons.
    pub reasons: Vec<StatusRow>,
    /// `also counted: NAME=N ...`.
    pub notes: BTreeMap<String, u64>,
    /// The text it was read from, for failure messages.
    pub text: String,
}

impl Status {
    /// Reads the output of `sni-filter status`. Unknown lines are ignored.
    pub fn parse(text: &str) -> Self {
        let mut status = Self {
            text: text.to_owned(),
            ..Self::default()
        };
        let mut table: Option<(String, Vec<String>)> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                table = None;
                continue;
            }
            if let Some(notes) = line.strip_prefix("also counted:") {
                for note in notes.split_whitespace() {
                    if let Some((name, n)) = note.split_once('=') {
                        status.notes.insert(name.to_owned(), n.parse().unwrap_or(0));
                    }
                }
                continue;
            }
            let cells = cells(line);
            match &table {
                None if matches!(
                    cells.first().map(String::as_str),
                    Some("interface" | "app" | "reason")
                ) =>
                {
                    table = Some((cells[0].clone(), cells));
                }
                None => {}
                Some((kind, header)) => {
                    let row = StatusRow {
                        key: cells.first().cloned().unwrap_or_default(),
                        cells: header.iter().cloned().zip(cells).collect(),
                    };
                    match kind.as_str() {
                        "interface" => status.interfaces.push(row),
                        "app" => status.apps.push(row),
                        _ => status.reasons.push(row),
                    }
                }
            }
        }
        status
    }

    /// The interface row of `ifname`.
    pub fn interface(&self, ifname: &str) -> Option<&StatusRow> {
        self.interfaces.iter().find(|r| r.key == ifname)
    }

    /// The row of `app`.
    pub fn app(&self, app: &str) -> Option<&StatusRow> {
        self.apps.iter().find(|r| r.key == app)
    }

    /// A reason's packets (0 when the reason is not listed, i.e. zero).
    ///
    /// # Panics
    /// When no reason of the program has that name (`status` leaves out only the zeros).
    pub fn reason_packets(&self, reason: &str) -> u64 {
        assert!(
            Reason::ALL.iter().any(|r| r.name() == reason),
            "no reason is named {reason:?}; the reasons: {:?}",
            Reason::ALL.map(Reason::name)
        );
        self.reasons
            .iter()
            .find(|r| r.key == reason)
            .map_or(0, |r| r.count("packets"))
    }

    /// A note's count (0 when not listed).
    ///
    /// # Panics
    /// When no note of the program has that name.
    pub fn note(&self, note: &str) -> u64 {
        assert!(
            Note::ALL.iter().any(|n| n.name() == note),
            "no note is named {note:?}; the notes: {:?}",
            Note::ALL.map(Note::name)
        );
        self.notes.get(note).copied().unwrap_or(0)
    }

    /// A column of an interface row (0 when the interface is not listed).
    pub fn interface_count(&self, ifname: &str, column: &str) -> u64 {
        self.interface(ifname).map_or(0, |r| r.count(column))
    }

    /// A column of an app row (0 when the app is not listed).
    pub fn app_count(&self, app: &str, column: &str) -> u64 {
        self.app(app).map_or(0, |r| r.count(column))
    }
}

/// The cells of a line: words, with a unit word joined to the number before it.
fn cells(line: &str) -> Vec<String> {
    let mut cells: Vec<String> = Vec::new();
    for word in line.split_whitespace() {
        match cells.last_mut() {
            Some(last) if UNITS.contains(&word) => {
                last.push(' ');
                last.push_str(word);
            }
            _ => cells.push(word.to_owned()),
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::Status;

    const SAMPLE: &str = "\
sni-filter (sni-filter-e2e-13055-0): running (pid 13136), program id 1344
config /work/main/config/filter.toml
rules sha256 4f1c0b6e2d9a8f7e3c5b1a0d9e8f7c6b5a4d3c2b1a0f9e8d7c6b5a4d3c2b1a0f, loaded 2026-01-05T10:00:00.000000Z

interface        mode             ipv4         ipv6        other         vlan      dropped
e2ea2n0gwc       native             15            3            0            2            5

app              action    enabled    rules      flows      dropped        bytes   resets
tiktok           drop          yes       20          1            5      2.8 KiB        3

reason                            packets      dropped        bytes
other_protocol                          3            0        290 B
hello_blocked                           1            1        583 B
blocked_flow                            4            4      2.3 KiB

also counted: ech_seen=4 sni_from_later_segment=1
";

    #[test]
    fn tables_and_notes_are_read() {
        let s = Status::parse(SAMPLE);
        assert_eq!(s.interface_count("e2ea2n0gwc", "ipv4"), 15);
        assert_eq!(s.interface_count("e2ea2n0gwc", "vlan"), 2);
        assert_eq!(s.interface("e2ea2n0gwc").unwrap().text("mode"), "native");
        assert_eq!(s.app_count("tiktok", "resets"), 3);
        assert_eq!(s.app("tiktok").unwrap().text("bytes"), "2.8 KiB");
        assert_eq!(s.app_count("tiktok", "flows"), 1);
        assert_eq!(s.reason_packets("blocked_flow"), 4);
        assert_eq!(s.reason_packets("hello_allowed"), 0);
        assert_eq!(s.note("sni_from_later_segment"), 1);
        assert_eq!(s.note("vlan_tagged"), 0);
        assert_eq!(s.reasons.len(), 3);
    }

    #[test]
    #[should_panic(expected = "no column \"resetz\"; its columns: [\"action\", \"app\", \"bytes\"")]
    fn a_missing_column_fails_naming_the_columns_it_saw() {
        Status::parse(SAMPLE).app_count("tiktok", "resetz");
    }

    #[test]
    #[should_panic(expected = "no reason is named \"hello_blockd\"")]
    fn an_unknown_reason_fails() {
        Status::parse(SAMPLE).reason_packets("hello_blockd");
    }

    #[test]
    #[should_panic(expected = "no note is named \"vlan_taged\"")]
    fn an_unknown_note_fails() {
        Status::parse(SAMPLE).note("vlan_taged");
    }
}
