//! The cpio "newc" archive format the kernel unpacks as its initramfs: directories, files and
//! device nodes written from memory, so building a guest's first userland needs no cpio tool.

use std::fmt::Write as _;
use std::io::{self, Write};

/// File type bits of a cpio entry's mode, as in `stat(2)`.
const DIRECTORY: u32 = 0o040_000;
const REGULAR: u32 = 0o100_000;
const CHAR_DEVICE: u32 = 0o020_000;

/// An initramfs being written: entries in order, parents before children.
pub struct Archive<W: Write> {
    out: W,
    next_inode: u32,
}

impl<W: Write> Archive<W> {
    pub const fn new(out: W) -> Self {
        Self { out, next_inode: 1 }
    }

    pub fn directory(&mut self, path: &str) -> io::Result<()> {
        self.entry(path, DIRECTORY | 0o755, (0, 0), &[])
    }

    pub fn file(&mut self, path: &str, permissions: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, REGULAR | permissions, (0, 0), data)
    }

    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, CHAR_DEVICE | 0o600, (major, minor), &[])
    }

    /// Writes the trailer the kernel stops at and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let name_size = path.len() + 1;
        let file_size = u32::try_from(data.len())
            .map_err(|_| io::Error::other(format!("{path} is too large for cpio")))?;
        let inode = self.next_inode;
        self.next_inode += 1;
        let nlink = if mode & DIRECTORY == DIRECTORY { 2 } else { 1 };
        // newc: magic, then 13 fields of 8 hex digits: inode, mode, uid, gid, nlink, mtime,
        // file size, device major and minor, rdev major and minor, name size, checksum.
        let fields = [
            inode,
            mode,
            0,
            0,
            nlink,
            0,
            file_size,
            0,
            0,
            rdev.0,
            rdev.1,
            name_size as u32,
            0,
        ];
        let mut header = String::from("070701");
        for field in fields {
            let _ = write!(header, "{field:08x}");
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(path.as_bytes())?;
        self.out.write_all(&[0])?;
        // The name (after the 110-byte header) and the data each end on a 4-byte boundary.
        self.pad(header.len() + name_size)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, written: usize) -> io::Result<()> {
        let zeros = (4 - written % 4) % 4;
        self.out.write_all(&[0; 3][..zeros])
    }
}

#[cfg(test)]
mod tests {
    use super::Archive;

    #[test]
    fn entries_are_aligned_and_end_with_the_trailer() {
        let mut archive = Archive::new(Vec::new());
        archive.directory("bin").unwrap();
        archive.file("bin/x", 0o755, b"hello").unwrap();
        let bytes = archive.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("070701"));
        assert_eq!(text.matches("070701").count(), 3);
        assert!(text.contains("bin/x\0"));
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
        // The file's header: mode 0100755, size 5, name size 6.
        let x = text.find("bin/x").unwrap();
        let header = &text[x - 110..x];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "00000005");
        assert_eq!(&header[94..102], "00000006");
    }
}
