//! `SOURCE_DATE_EPOCH` for layers: a tar stream with every timestamp later than the epoch set to
//! the epoch (BuildKit's `rewrite-timestamp`), so a layer made now and one made tomorrow from
//! the same inputs are the same bytes. Works on the 512-byte blocks themselves — header `mtime`
//! (and GNU `atime`/`ctime`) fields with the checksum recomputed, PAX `mtime`/`atime`/`ctime`
//! records rewritten — so contents, names, links and extended attributes pass through untouched
//! and nothing is re-encoded.

use std::io::{self, Read};

const BLOCK: usize = 512;
/// PAX headers larger than this are passed through unchanged rather than held in memory.
const MAX_PAX: u64 = 1 << 20;

/// The same clamp on a directory tree (a build step's upper directory, which becomes the
/// layer's snapshot), so a container of the built image sees the times the layer holds: access
/// and modification times later than `epoch` become `epoch`; symlinks are not followed.
pub fn clamp_tree(dir: &std::path::Path, epoch: u64) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let epoch_ts = Timespec {
        tv_sec: epoch as i64,
        tv_nsec: 0,
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let md = e.path().symlink_metadata()?;
            if md.is_dir() {
                stack.push(e.path());
            }
            clamp_one(&e.path(), &md, epoch, epoch_ts)?;
        }
    }
    let md = dir.symlink_metadata()?;
    return clamp_one(dir, &md, epoch, epoch_ts);

    fn clamp_one(
        p: &std::path::Path,
        md: &std::fs::Metadata,
        epoch: u64,
        epoch_ts: Timespec,
    ) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let clamp = |sec: i64, nsec: i64| {
            if sec >= epoch as i64 && !(sec == epoch as i64 && nsec == 0) {
                epoch_ts
            } else {
                Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec as _,
                }
            }
        };
        let (m, a) = (
            clamp(md.mtime(), md.mtime_nsec()),
            clamp(md.atime(), md.atime_nsec()),
        );
        if m.tv_sec == md.mtime() && a.tv_sec == md.atime() && m.tv_nsec == md.mtime_nsec() {
            return Ok(());
        }
        let ts = Timestamps {
            last_access: a,
            last_modification: m,
        };
        utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    }
}

/// Reads a tar from `inner` with its timestamps clamped to `epoch` (seconds since 1970).
pub struct ClampMtimes<R> {
    inner: R,
    epoch: u64,
    /// Bytes ready to hand out, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    /// Content bytes (padding included) to pass through before the next header.
    data_left: u64,
    done: bool,
}

impl<R: Read> ClampMtimes<R> {
    pub fn new(inner: R, epoch: u64) -> Self {
        ClampMtimes {
            inner,
            epoch,
            pending: Vec::new(),
            pos: 0,
            data_left: 0,
            done: false,
        }
    }

    /// Read up to `n` bytes (fewer only at the end of the stream).
    fn read_full(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Read the next header block (and, for a PAX header, its records) into `pending`.
    fn next_header(&mut self) -> io::Result<()> {
        let mut block = self.read_full(BLOCK)?;
        if block.len() < BLOCK || block.iter().all(|&b| b == 0) {
            // End-of-archive blocks, or a truncated tail for the consumer to reject.
            if block.is_empty() {
                self.done = true;
            }
            self.pending = block;
            self.pos = 0;
            return Ok(());
        }
        let size = parse_number(&block[124..136]);
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let kind = block[156];
        if matches!(kind, b'x' | b'g') && size <= MAX_PAX {
            let mut data = self.read_full(padded as usize)?;
            if (data.len() as u64) < padded {
                // Truncated: hand everything on as it is.
                block.extend_from_slice(&data);
                self.pending = block;
                self.pos = 0;
                return Ok(());
            }
            data.truncate(size as usize);
            let records = clamp_pax(&data, self.epoch);
            let mut changed = records != data;
            if changed {
                write_octal(&mut block[124..136], records.len() as u64);
            }
            changed |= clamp_field(&mut block[136..148], self.epoch);
            if changed {
                fix_checksum(&mut block);
            }
            let mut out = block;
            out.extend_from_slice(&records);
            out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
            self.pending = out;
            self.pos = 0;
            return Ok(());
        }
        let mut changed = clamp_field(&mut block[136..148], self.epoch);
        // GNU headers carry atime and ctime too (zero when unused).
        if &block[257..265] == b"ustar  \0" {
            changed |= clamp_field(&mut block[345..357], self.epoch);
            changed |= clamp_field(&mut block[357..369], self.epoch);
        }
        if changed {
            fix_checksum(&mut block);
        }
        self.pending = block;
        self.pos = 0;
        // Link-like entries carry no content whatever their size field says (as readers
        // treat them): only regular-ish entries and GNU long names have data blocks.
        self.data_left = if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            0
        } else {
            padded
        };
        Ok(())
    }
}

impl<R: Read> Read for ClampMtimes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.pending.len() {
                let n = (self.pending.len() - self.pos).min(buf.len());
                buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.data_left > 0 {
                let want = (self.data_left.min(buf.len() as u64)) as usize;
                let n = self.inner.read(&mut buf[..want])?;
                self.data_left -= n as u64;
                if n == 0 {
                    self.data_left = 0;
                }
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            self.next_header()?;
            if self.pending.is_empty() {
                return Ok(0);
            }
        }
    }
}

/// A numeric header field: octal text, or GNU base-256 when the high bit is set.
fn parse_number(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.wrapping_shl(8) | b as u64;
        }
        return v;
    }
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    u64::from_str_radix(s.trim(), 8).unwrap_or(0)
}

/// Write `v` as zero-padded octal ending in NUL, or base-256 when it does not fit.
fn write_octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() <= digits {
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        let n = field.len();
        field.fill(0);
        for i in 0..8.min(n - 1) {
            field[n - 1 - i] = (v >> (8 * i)) as u8;
        }
        field[0] |= 0x80;
    }
}

/// Whether the field was changed.
fn clamp_field(field: &mut [u8], epoch: u64) -> bool {
    let later = parse_number(field) > epoch;
    if later {
        write_octal(field, epoch);
    }
    later
}

fn fix_checksum(block: &mut [u8]) {
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

/// PAX records with `mtime`/`atime`/`ctime` later than `epoch` set to it; anything that does
/// not parse is kept as it is.
fn clamp_pax(data: &[u8], epoch: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&b| b == b' ') else {
            out.extend_from_slice(rest);
            break;
        };
        let len = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&l| l > sp && l <= rest.len());
        let Some(len) = len else {
            out.extend_from_slice(rest);
            break;
        };
        let record = &rest[sp + 1..len];
        rest = &rest[len..];
        let body = record.strip_suffix(b"\n").unwrap_or(record);
        let clamped = body.iter().position(|&b| b == b'=').and_then(|eq| {
            let key = &body[..eq];
            if !matches!(key, b"mtime" | b"atime" | b"ctime") {
                return None;
            }
            let v: f64 = std::str::from_utf8(&body[eq + 1..]).ok()?.parse().ok()?;
            (v > epoch as f64).then(|| String::from_utf8_lossy(key).into_owned())
        });
        match clamped {
            Some(key) => out.extend_from_slice(&pax_record(&key, &epoch.to_string())),
            None => {
                out.extend_from_slice(len.to_string().as_bytes());
                out.push(b' ');
                out.extend_from_slice(record);
            }
        }
    }
    out
}

/// `"<len> key=value\n"`, where `<len>` counts the whole record, itself included.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_clamped_without_following_symlinks() {
        let d = tempfile::TempDir::new().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("l")).unwrap();
        let host_before = std::fs::metadata("/etc/hostname")
            .unwrap()
            .modified()
            .unwrap();
        clamp_tree(d.path(), 1_000_000).unwrap();
        use std::os::unix::fs::MetadataExt;
        for p in ["", "sub", "sub/f", "l"] {
            let md = d.path().join(p).symlink_metadata().unwrap();
            assert_eq!(md.mtime(), 1_000_000, "{p}");
        }
        assert_eq!(
            std::fs::metadata("/etc/hostname")
                .unwrap()
                .modified()
                .unwrap(),
            host_before
        );
    }

    fn sample(mtime: u64) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        b.append_data(&mut h, "a/file", &b"hello"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mtime(mtime);
        b.append_link(&mut h, "a/link", "file").unwrap();
        // A long name (GNU 'L' entry) and an xattr (PAX header) pass through.
        b.append_pax_extensions([("SCHILY.xattr.user.x", &b"v"[..])])
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        let long = format!("d/{}", "n".repeat(150));
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    fn clamp(t: &[u8], epoch: u64) -> Vec<u8> {
        let mut out = Vec::new();
        ClampMtimes::new(t, epoch).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn later_times_become_the_epoch_and_the_rest_is_kept() {
        let clamped = clamp(&sample(2_000_000_000), 1_000);
        assert_eq!(clamped, clamp(&sample(1_900_000_000), 1_000));
        let mut ar = tar::Archive::new(&clamped[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 1_000);
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            seen.push((path, s));
        }
        assert_eq!(seen[0], ("a/file".to_string(), "hello".to_string()));
        assert_eq!(seen[1].0, "a/link");
        assert_eq!(seen[2], (format!("d/{}", "n".repeat(150)), "abc".into()));
        // Earlier times stay.
        assert_eq!(clamp(&sample(500), 1_000), sample(500));
    }

    #[test]
    fn pax_times_are_clamped_with_lengths_recomputed() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("mtime", &b"1999999999.5"[..]), ("path", &b"x"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mtime(5);
        b.append_data(&mut h, "y", io::empty()).unwrap();
        let t = b.into_inner().unwrap();
        let out = clamp(&t, 77);
        let mut ar = tar::Archive::new(&out[..]);
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let exts: Vec<(String, String)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value().unwrap().to_string())
            })
            .collect();
        assert!(exts.contains(&("mtime".into(), "77".into())), "{exts:?}");
        assert_eq!(e.path().unwrap().to_string_lossy(), "x");
        assert_eq!(pax_record("mtime", "77"), b"12 mtime=77\n");
        let _ = e.read_to_end(&mut Vec::new());
    }
}
