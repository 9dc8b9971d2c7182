//! Seccomp filters compiled once, not in every container's init.
//!
//! libseccomp takes 2 ms to compile Docker's allowlist for the native architecture alone and
//! 15–112 ms with the x86 and x32 sub-architectures (bench/RESULTS.md, 2026-12-07), and
//! libcontainer does it in the init, on `run`'s critical path. Here the filter is compiled in
//! the parent (with libcontainer's own conversion, `libcontainer::seccomp::export_bpf`), kept
//! as raw BPF under `ROOT/seccomp/`, and handed to the init, which loads it with one
//! `seccomp(2)` call.
//!
//! A cache file is named by the SHA-256 of everything the program depends on: the bundle's
//! `linux.seccomp` section (the profile after berth's conversion, which has already applied the
//! container's capabilities, the kernel version and the architecture), the libseccomp version
//! and the kernel's release and machine. A different profile, capability set, kernel or
//! libseccomp gives a different file. The file repeats the key and carries the SHA-256 of the
//! key and the program; one that does not check out (truncated by a crash, corrupted, or a different
//! program under the name) is compiled again and replaced, never loaded. The files live in the
//! state root, which only root can reach (0700), and are written temp + fsync + rename.
//!
//! Anything that goes wrong here only costs the compile: `program` answers `None` and the init
//! builds the filter with libseccomp as before, reporting any error in the profile itself.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Starts every cache file; the digit is the format's version.
const MAGIC: &[u8; 8] = b"BERTHBP1";
/// Magic, the key, the checksum.
const HEADER: usize = 8 + 32 + 32;
/// One `struct sock_filter`.
const INSN: usize = 8;
/// The kernel's limit (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// The BPF program for the `linux.seccomp` section of the bundle's `config.json`, from the
/// cache in `dir` or compiled into it. `None` when the bundle has no filter, when the filter
/// needs libseccomp's own load (notify rules, filter flags), or when compiling fails (the init
/// then builds it and reports why).
pub fn program(dir: &Path, bundle: &Path) -> Option<Vec<u8>> {
    let config = bundle.join("config.json");
    let text = match std::fs::read(&config) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("seccomp cache: reading {}: {e}", config.display());
            return None;
        }
    };
    let mut spec: Value = serde_json::from_slice(&text).ok()?;
    let section = spec.get_mut("linux")?.get_mut("seccomp")?.take();
    if section.is_null() {
        return None;
    }
    lookup(dir, section)
}

/// [`program`] for a `linux.seccomp` section.
pub(super) fn lookup(dir: &Path, section: Value) -> Option<Vec<u8>> {
    let key = key(&section)?;
    let path = dir.join(format!("{}.bpf", hex::encode(key)));
    match std::fs::read(&path) {
        Ok(bytes) => match check(&bytes, &key) {
            Ok(program) => return Some(program.to_vec()),
            Err(why) => tracing::warn!(
                "seccomp cache: {} {why}; compiling the filter again",
                path.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("seccomp cache: reading {}: {e}", path.display()),
    }
    let seccomp: LinuxSeccomp = serde_json::from_value(section).ok()?;
    if !libcontainer::seccomp::can_precompile(&seccomp) {
        return None;
    }
    let program = compile(&seccomp)?;
    if let Err(e) = store(dir, &path, &key, &program) {
        tracing::warn!("seccomp cache: writing {}: {e}", path.display());
    }
    Some(program)
}

/// The cache key: SHA-256 over every input of the compiled program.
fn key(section: &Value) -> Option<[u8; 32]> {
    let version = match libcontainer::seccomp::libseccomp_version() {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("seccomp cache: libseccomp's version: {e}");
            return None;
        }
    };
    let uts = rustix::system::uname();
    let mut h = Sha256::new();
    for part in [
        &MAGIC[..],
        version.as_bytes(),
        uts.release().to_bytes(),
        uts.machine().to_bytes(),
        serde_json::to_string(section).ok()?.as_bytes(),
    ] {
        // Length-prefixed, so no two different input lists hash the same bytes.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(h.finalize().into())
}

/// The program in a cache file's bytes, or what is wrong with them.
fn check<'a>(bytes: &'a [u8], key: &[u8; 32]) -> Result<&'a [u8], &'static str> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("is not a cache file of this format");
    }
    if &bytes[8..40] != key {
        return Err("was made for other inputs");
    }
    let program = &bytes[HEADER..];
    if !loadable(program) {
        return Err("is truncated or not a BPF program");
    }
    if checksum(key, program)[..] != bytes[40..HEADER] {
        return Err("does not match its checksum");
    }
    Ok(program)
}

/// Whether `program` has the shape of one the kernel takes: whole instructions, 1 to 4096.
fn loadable(program: &[u8]) -> bool {
    !program.is_empty() && program.len().is_multiple_of(INSN) && program.len() / INSN <= MAX_INSNS
}

/// The file's checksum: over the key and the program, so a program is only ever taken for the
/// inputs it was compiled from.
fn checksum(key: &[u8; 32], program: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(program);
    h.finalize().into()
}

/// Compile with libcontainer's conversion, exporting into an anonymous memory file.
fn compile(seccomp: &LinuxSeccomp) -> Option<Vec<u8>> {
    let run = || -> Result<Vec<u8>, String> {
        let fd = rustix::fs::memfd_create("berth-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| e.to_string())?;
        let mut file = std::fs::File::from(fd);
        libcontainer::seccomp::export_bpf(seccomp, &file).map_err(|e| e.to_string())?;
        file.rewind().map_err(|e| e.to_string())?;
        let mut program = Vec::new();
        file.read_to_end(&mut program).map_err(|e| e.to_string())?;
        Ok(program)
    };
    match run() {
        Ok(p) if loadable(&p) => Some(p),
        Ok(p) => {
            tracing::warn!(
                "seccomp cache: the compiled filter is {} bytes, not a loadable program",
                p.len()
            );
            None
        }
        Err(e) => {
            tracing::warn!("seccomp cache: compiling the filter: {e}");
            None
        }
    }
}

/// Write the cache file: temp file in the same directory, fsync, rename, fsync the directory.
fn store(dir: &Path, path: &Path, key: &[u8; 32], program: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(".tmp-", dir)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(key)?;
    tmp.write_all(&checksum(key, program))?;
    tmp.write_all(program)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_files_are_refused() {
        let key = [7u8; 32];
        let program = [0u8; 16];
        let mut file = MAGIC.to_vec();
        file.extend(key);
        file.extend(checksum(&key, &program));
        file.extend(program);
        assert_eq!(check(&file, &key), Ok(&program[..]));
        assert!(check(&file, &[8u8; 32]).is_err(), "another key");
        assert!(check(&file[..file.len() - 3], &key).is_err(), "truncated");
        assert!(
            check(&file[..file.len() - 8], &key).is_err(),
            "one insn short"
        );
        assert!(check(&file[..HEADER], &key).is_err(), "no program");
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(check(&flipped, &key).is_err(), "corrupted");
        assert!(check(b"garbage", &key).is_err());
    }
}
