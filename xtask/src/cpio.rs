//! cpio "newc" archives, the format the kernel unpacks an initramfs from (uncompressed, and
//! several archives may follow one another in one file: later entries replace earlier ones).

use std::io::{self, Write};

/// Writes entries one after another; [`Cpio::finish`] adds the trailer.
pub struct Cpio<W: Write> {
    out: W,
    offset: u64,
    ino: u32,
}

/// An entry's owner, mode (with its file type bits) and device numbers.
#[derive(Clone, Copy)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: (u32, u32),
}

impl Meta {
    pub const fn root(mode: u32) -> Self {
        Self { mode, uid: 0, gid: 0, rdev: (0, 0) }
    }
}

pub const DIR: u32 = 0o040000;
pub const FILE: u32 = 0o100000;
pub const SYMLINK: u32 = 0o120000;
pub const CHAR_DEVICE: u32 = 0o020000;

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self { out, offset: 0, ino: 1 }
    }

    /// One record: a 110-byte ASCII header, the NUL-terminated name and the data (a symlink's
    /// data is its target), each padded to 4 bytes. `name` has no leading `/`.
    pub fn entry(&mut self, name: &str, meta: Meta, data: &[u8]) -> io::Result<()> {
        let nlink = if meta.mode & 0o170000 == DIR { 2 } else { 1 };
        let ino = self.ino;
        self.ino += 1;
        let fields = [ino, meta.mode, meta.uid, meta.gid, nlink, 0, data.len() as u32, 0, 0, meta.rdev.0, meta.rdev.1, name.len() as u32 + 1, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    /// The trailer; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", Meta::root(0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.offset % 4) % 4;
        self.write(&[0u8; 3][..n as usize])
    }
}
