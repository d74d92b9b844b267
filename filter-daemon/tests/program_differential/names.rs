//! The host names the generator puts in hellos: random LDH names of every length up to
//! the RFC bound, the banned domain and names below it, look-alikes, one-character labels,
//! in any case and with or without a trailing dot.

use rand::{Rng, rngs::SmallRng};

use super::BANNED;

/// Names that look like the banned domain without being it or below it.
pub const LOOKALIKES: [&str; 12] = [
    "nottiktok.com",
    "tiktok.com.evil.net",
    "tiktok.co",
    "tiktok.comm",
    "tiktokcom",
    "tiktok",
    "com",
    "ktok.com",
    "tiktok-com.net",
    "tiktok.com-cdn.net",
    "tiktok.cn",
    "xn--tiktok-7ua.com",
];

/// Longest host name (RFC 1035 §2.3.4) and longest label.
pub const NAME_MAX: usize = 255;
pub const LABEL_MAX: usize = 63;

/// No name (a tenth of the hellos), one, or a list of up to four.
pub fn pick_names(rng: &mut SmallRng) -> Vec<String> {
    if rng.gen_bool(0.1) {
        return Vec::new();
    }
    let count = if rng.gen_bool(0.7) {
        1
    } else {
        rng.gen_range(2..=4)
    };
    (0..count).map(|_| host_name(rng)).collect()
}

pub fn host_name(rng: &mut SmallRng) -> String {
    // Room for a trailing dot.
    let room = NAME_MAX - 1;
    let suffix = format!(".{}", String::from_utf8_lossy(BANNED));
    let name = match rng.gen_range(0..10) {
        0..=2 => {
            let len = match rng.gen_range(0..20) {
                0..=11 => rng.gen_range(3..=40),
                12..=16 => rng.gen_range(41..=200),
                _ => rng.gen_range(201..=room),
            };
            random_host(rng, len)
        }
        3 => String::from_utf8_lossy(BANNED).into_owned(),
        4..=5 => {
            let len = rng.gen_range(1..=room - suffix.len());
            random_host(rng, len) + &suffix
        }
        6..=7 => {
            let lookalike = LOOKALIKES[rng.gen_range(0..LOOKALIKES.len())];
            if rng.gen_bool(0.5) {
                let len = rng.gen_range(1..=room - 1 - lookalike.len());
                format!("{}.{lookalike}", random_host(rng, len))
            } else {
                lookalike.to_owned()
            }
        }
        // Labels of one character: the most labels a name can have.
        _ => {
            let banned = rng.gen_bool(0.5);
            let room = if banned { room - suffix.len() } else { room };
            let labels = rng.gen_range(1..=room.div_ceil(2));
            let mut name: Vec<String> = (0..labels).map(|_| label(rng, 1)).collect();
            if banned {
                name.push(String::from_utf8_lossy(BANNED).into_owned());
            }
            name.join(".")
        }
    };
    let mut name = match rng.gen_range(0..10) {
        0..=5 => name,
        6..=7 => name.to_ascii_uppercase(),
        _ => name
            .chars()
            .map(|c| {
                if rng.gen_bool(0.5) {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect(),
    };
    if rng.gen_bool(0.15) {
        name.push('.');
    }
    assert!((1..=NAME_MAX).contains(&name.len()), "generated {name:?}");
    name
}

/// A host name of at most `len` bytes (and at least one label) of LDH labels.
pub fn random_host(rng: &mut SmallRng, len: usize) -> String {
    let mut name = String::new();
    while name.len() < len {
        if !name.is_empty() {
            if len - name.len() < 2 {
                break;
            }
            name.push('.');
        }
        let room = (len - name.len()).min(LABEL_MAX);
        let want = if rng.gen_bool(0.7) {
            rng.gen_range(1..=12)
        } else {
            rng.gen_range(1..=LABEL_MAX)
        };
        name.push_str(&label(rng, want.min(room)));
    }
    name
}

/// A label of letters, digits and inner hyphens (RFC 1035 §2.3.1).
pub fn label(rng: &mut SmallRng, len: usize) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|i| {
            if i > 0 && i + 1 < len && rng.gen_bool(0.1) {
                '-'
            } else {
                char::from(ALNUM[rng.gen_range(0..ALNUM.len())])
            }
        })
        .collect()
}
