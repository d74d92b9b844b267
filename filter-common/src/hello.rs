//! A streaming ClientHello walker. Fed a flow's TCP payload chunk by chunk, it steps over TLS
//! records and ClientHello fields by their lengths and stops at each server name it reads.
//!
//! The walker never looks at a byte twice and keeps all of its state in [`HelloWalk`], so a
//! hello split across records or TCP segments at any byte is read the same as a whole one.
//! It indexes its input with masked indices and runs a bounded number of steps per call,
//! which is what the verifier needs to accept it inside the XDP program.
//!
//! `walk` holds the walker and its stream of records, `fields` the ClientHello fields it
//! reads, `state` the entry that carries a hello across segments.

mod fields;
mod state;
mod walk;

pub use state::{HELLO_CONFLICT_IDLE_NS, HELLO_IDLE_NS, HELLO_KEEP, HELLO_SEGMENTS_MAX, HelloFlow};
pub use walk::{
    HELLO_LEN_MAX, HelloWalk, NAME_CHUNK, RECORD_LEN_MAX, SCRATCH_LEN, Step, WALK_ECH_SEEN,
    WALK_NAME_LATER, WALK_NAME_SEEN, WALK_SNI_SEEN, WALK_STEPS_MAX, walk_reason,
};

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::wire::EXT_ECH;
    use std::boxed::Box;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// A minimal TLS 1.2-style ClientHello record carrying `names` in one SNI extension.
    fn hello(names: &[&str], extra_ext: &[(u16, usize)]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (kind, len) in extra_ext {
            exts.extend_from_slice(&kind.to_be_bytes());
            exts.extend_from_slice(&(*len as u16).to_be_bytes());
            exts.extend(std::iter::repeat_n(0xab, *len));
        }
        if !names.is_empty() {
            let mut list = Vec::new();
            for n in names {
                list.push(0);
                list.extend_from_slice(&(n.len() as u16).to_be_bytes());
                list.extend_from_slice(n.as_bytes());
            }
            exts.extend_from_slice(&0u16.to_be_bytes());
            exts.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
            exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
            exts.extend_from_slice(&list);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(32);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        records(&hs, hs.len())
    }

    fn records(hs: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in hs.chunks(size) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn handshake(record: &[u8]) -> Vec<u8> {
        record[5..].to_vec()
    }

    /// Walks `stream` cut into chunks at `cuts`, returning the names and the last step.
    fn walk(stream: &[u8], cuts: &[usize]) -> (Vec<String>, Step) {
        let mut w = Box::new(HelloWalk::new());
        let mut names = Vec::new();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < stream.len()));
        bounds.push(stream.len());
        let mut last = Step::NeedMore;
        for pair in bounds.windows(2) {
            let mut buf = Box::new([0u8; SCRATCH_LEN]);
            let chunk = &stream[pair[0]..pair[1]];
            buf[..chunk.len()].copy_from_slice(chunk);
            let mut pos = 0;
            loop {
                match w.next_name(&buf, &mut pos, chunk.len() as u32) {
                    Ok(()) => {
                        names.push(String::from_utf8_lossy(&w.name[..w.name_len as usize]).into());
                    }
                    Err(step) => {
                        last = step;
                        break;
                    }
                }
            }
            if last != Step::NeedMore {
                break;
            }
        }
        (names, last)
    }

    #[test]
    fn reads_the_name_of_a_whole_hello() {
        let h = hello(&["www.tiktok.com"], &[(10, 8), (EXT_ECH, 40)]);
        let (names, step) = walk(&h, &[]);
        assert_eq!(names, ["www.tiktok.com"]);
        assert_eq!(step, Step::Done);
    }

    #[test]
    fn the_hello_ends_after_the_last_extension_body() {
        // The last extension is 300 bytes of padding: cut inside it, the walk must want more
        // (the rest is still the hello) and end only after its last byte.
        let h = hello(&["a.example"], &[(21, 300)]);
        let names_end = h.len() - 300;
        let (_, step) = walk(&h[..names_end], &[]);
        assert_eq!(step, Step::NeedMore, "cut after the padding header");
        assert_eq!(walk(&h, &[names_end + 10]).1, Step::Done);
    }

    #[test]
    fn reads_every_name_of_a_list() {
        let h = hello(&["a.example", "b.tiktok.com"], &[]);
        assert_eq!(walk(&h, &[]).0, ["a.example", "b.tiktok.com"]);
    }

    #[test]
    fn split_at_every_byte_reads_the_same() {
        let h = hello(&["www.tiktok.com"], &[(21, 300), (43, 7)]);
        for cut in 1..h.len() {
            let (names, step) = walk(&h, &[cut]);
            assert_eq!(names, ["www.tiktok.com"], "cut at {cut}");
            assert_eq!(step, Step::Done, "cut at {cut}");
        }
    }

    #[test]
    fn one_byte_chunks_read_the_same() {
        let h = hello(&["x.tiktok.com"], &[(5, 20)]);
        let cuts: Vec<usize> = (1..h.len()).collect();
        assert_eq!(walk(&h, &cuts), (vec!["x.tiktok.com".into()], Step::Done));
    }

    #[test]
    fn hello_over_many_records_reads_the_same() {
        let h = hello(&["www.tiktok.com"], &[(21, 100)]);
        for size in [1usize, 2, 3, 7, 64, 100] {
            let r = records(&handshake(&h), size);
            let cuts: Vec<usize> = (1..r.len()).step_by(97).collect();
            let (names, step) = walk(&r, &cuts);
            assert_eq!(names, ["www.tiktok.com"], "records of {size}");
            assert_eq!(step, Step::Done, "records of {size}");
        }
    }

    #[test]
    fn ech_and_missing_sni_are_reported() {
        let h = hello(&[], &[(EXT_ECH, 100)]);
        let mut w = Box::new(HelloWalk::new());
        let mut buf = Box::new([0u8; SCRATCH_LEN]);
        buf[..h.len()].copy_from_slice(&h);
        let mut pos = 0;
        assert_eq!(w.next_name(&buf, &mut pos, h.len() as u32), Err(Step::Done));
        assert_eq!(w.flags & WALK_ECH_SEEN, WALK_ECH_SEEN);
        assert_eq!(w.flags & WALK_NAME_SEEN, 0);
    }

    #[test]
    fn record_versions_a_server_may_take_are_read() {
        let mut h = hello(&["a.b"], &[]);
        h[1] = 0;
        h[2] = 1;
        assert_eq!(walk(&h, &[]), (vec![String::from("a.b")], Step::Done));
        h[1] = 0x10;
        assert_eq!(walk(&h, &[]).1, Step::NotHandshake);
    }

    #[test]
    fn non_tls_and_non_hello_streams_are_told_apart() {
        assert_eq!(
            walk(b"GET / HTTP/1.1\r\nHost: tiktok.com\r\n\r\n", &[]).1,
            Step::NotHandshake
        );
        let mut h = hello(&["a.b"], &[]);
        h[5] = 2; // ServerHello
        assert_eq!(walk(&h, &[]).1, Step::NotClientHello);
    }

    #[test]
    fn inconsistent_lengths_are_malformed_not_misread() {
        let h = hello(&["www.tiktok.com"], &[]);
        // Each length field in turn made one larger than the bytes that follow.
        for (at, what) in [(43, "session id"), (76, "ciphers"), (82, "compression")] {
            let mut m = h.clone();
            m[at] = m[at].wrapping_add(200);
            let (names, step) = walk(&m, &[]);
            assert!(names.is_empty(), "{what}: read {names:?}");
            assert!(
                matches!(step, Step::Malformed | Step::NeedMore),
                "{what}: {step:?}"
            );
        }
    }
}
