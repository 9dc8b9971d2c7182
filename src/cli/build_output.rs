//! `build --output`: BuildKit's exporters. `type=oci` and `type=docker` write an image archive
//! (the store's exporter, layers compressed as `--compression`/`compression=` ask), `type=tar`
//! the final root filesystem as a tar, `type=local` the same into a directory. Files are written
//! to a temp file beside the destination and renamed into place, a directory is filled under a
//! temp name and renamed, so a failure leaves nothing half-written. `dest=-` (or `-o -`) writes
//! the tar to stdout, which must not be a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use berth_store::archive::{ExportFormat, ExportOptions};
use berth_store::compression::Compression;
use berth_store::{Image, Reference, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oci,
    Docker,
    Tar,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub kind: Kind,
    pub dest: Dest,
    pub compression: Compression,
    pub level: Option<u32>,
    /// `name=` entries: more names for the image in the archive.
    pub names: Vec<Reference>,
}

fn parse_compression(v: &str) -> Result<Compression> {
    Ok(match v {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "uncompressed" => Compression::None,
        "estargz" => {
            bail!("compression estargz is not supported by berth; use gzip, zstd or uncompressed")
        }
        other => bail!("invalid compression {other:?}: use gzip, zstd or uncompressed"),
    })
}

impl OutputSpec {
    /// Reads `-o`'s value as buildx does: `-` (a tar on stdout), a bare path (`type=local`), or
    /// `key=value,…` with `type`, `dest`, `compression`, `compression-level`, `name`.
    pub fn parse(spec: &str, compression: Option<&str>) -> Result<OutputSpec> {
        let mut out = OutputSpec {
            kind: Kind::Local,
            dest: Dest::Path(PathBuf::from(spec)),
            compression: Compression::Gzip,
            level: None,
            names: Vec::new(),
        };
        if let Some(c) = compression {
            out.compression = parse_compression(c).context("--compression")?;
        }
        if spec == "-" {
            out.kind = Kind::Tar;
            out.dest = Dest::Stdout;
            return Ok(out);
        }
        if !spec.contains('=') {
            if spec.is_empty() {
                bail!("invalid --output: empty destination");
            }
            return Ok(out);
        }
        let mut kind = None;
        let mut dest = None;
        for field in spec.split(',') {
            let Some((k, v)) = field.split_once('=') else {
                bail!(
                    "invalid --output field {field:?}: expected key=value (e.g. type=oci,dest=out.tar)"
                );
            };
            match k.trim() {
                "type" => {
                    kind = Some(match v {
                        "oci" => Kind::Oci,
                        "docker" => Kind::Docker,
                        "tar" => Kind::Tar,
                        "local" => Kind::Local,
                        "image" | "registry" | "cacheonly" => bail!(
                            "--output type={v} is not supported by berth: use type=oci, docker, tar or local (and berth push to publish)"
                        ),
                        other => {
                            bail!("invalid --output type {other:?}: use oci, docker, tar or local")
                        }
                    })
                }
                "dest" => dest = Some(v.to_string()),
                "compression" => out.compression = parse_compression(v)?,
                "compression-level" => {
                    out.level = Some(v.parse().with_context(|| {
                        format!("invalid compression-level {v:?}: expected a number")
                    })?)
                }
                "name" => {
                    for n in v.split(';').filter(|n| !n.is_empty()) {
                        out.names.push(
                            Reference::parse(n)
                                .with_context(|| format!("invalid name {n:?} in --output"))?
                                .with_default_tag(),
                        );
                    }
                }
                // Accepted as BuildKit does; berth's archives already behave so.
                "force-compression" | "oci-mediatypes" | "rewrite-timestamp" | "tar" => {}
                other => bail!(
                    "unknown --output attribute {other:?}: berth knows type, dest, compression, compression-level, name"
                ),
            }
        }
        out.kind = kind.context("--output needs type= (oci, docker, tar or local)")?;
        out.dest = match (out.kind, dest.as_deref()) {
            (_, Some("-")) if out.kind != Kind::Local => Dest::Stdout,
            (Kind::Local, Some("-")) => {
                bail!("--output type=local needs a directory as dest, not \"-\"")
            }
            (_, Some(d)) if !d.is_empty() => Dest::Path(PathBuf::from(d)),
            (Kind::Local, _) => bail!("--output type=local needs dest=DIRECTORY"),
            // Without dest the archive goes to stdout, as buildx does.
            (_, _) => Dest::Stdout,
        };
        Ok(out)
    }

    /// Write `img` as this output says; returns a short description of where it went.
    pub fn export(
        &self,
        store: &Store,
        img: &Image,
        tags: &[Reference],
        epoch: Option<u64>,
    ) -> Result<String> {
        let label = match self.kind {
            Kind::Oci => "oci image format",
            Kind::Docker => "docker image format",
            Kind::Tar | Kind::Local => "client directory",
        };
        if self.kind == Kind::Local {
            let Dest::Path(dir) = &self.dest else {
                bail!("--output type=local needs dest=DIRECTORY");
            };
            self.write_local(store, img, dir)?;
            return Ok(format!("{label} {}", dir.display()));
        }
        let write = |w: &mut dyn Write| -> Result<()> {
            match self.kind {
                Kind::Oci | Kind::Docker => {
                    let opts = ExportOptions {
                        format: if self.kind == Kind::Oci {
                            ExportFormat::Oci
                        } else {
                            ExportFormat::Docker
                        },
                        compression: self.compression,
                        level: self.level,
                        tags: tags.to_vec(),
                        threads: berth_store::remote::gzip::threads(),
                        mtime: epoch,
                    };
                    berth_store::archive::export(store, img, &opts, w)?;
                }
                _ => {
                    let scratch = scratch_dir(store)?;
                    berth_runner::fsview::export_image(store, img, scratch.path(), w)?;
                }
            }
            Ok(())
        };
        match &self.dest {
            Dest::Stdout => {
                let out = std::io::stdout();
                if out.is_terminal() {
                    bail!(
                        "refusing to write the {} output to a terminal: give dest=FILE or redirect stdout",
                        kind_name(self.kind)
                    );
                }
                let mut w = std::io::BufWriter::with_capacity(1 << 20, out.lock());
                write(&mut w)?;
                w.flush().context("writing to standard output")?;
                Ok(format!("{label} on stdout"))
            }
            Dest::Path(p) => {
                super::outfile::write(p, "failed to write the build output", write)??;
                Ok(format!("{label} {}", p.display()))
            }
        }
    }

    /// The root filesystem unpacked under a temp name beside `dir`, then renamed to it.
    fn write_local(&self, store: &Store, img: &Image, dir: &Path) -> Result<()> {
        if let Ok(mut rd) = std::fs::read_dir(dir) {
            if rd.next().is_some() {
                bail!(
                    "--output type=local: {} exists and is not empty; give a new or empty directory",
                    dir.display()
                );
            }
        } else if dir.exists() {
            bail!("--output type=local: {} is not a directory", dir.display());
        }
        let parent = match dir.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(".berth-output-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a directory in {}", parent.display()))?;
        let scratch = scratch_dir(store)?;
        let (reader, mut writer) = std::io::pipe().context("creating a pipe")?;
        let dest = tmp.path().to_path_buf();
        let unpack = std::thread::spawn(move || {
            berth_store::extract::unpack_layer(std::io::BufReader::new(reader), &dest)
        });
        let wrote = berth_runner::fsview::export_image(store, img, scratch.path(), &mut writer);
        drop(writer);
        let unpacked = unpack
            .join()
            .map_err(|_| anyhow::anyhow!("unpacking the root filesystem failed"))?;
        wrote?;
        unpacked.with_context(|| format!("writing into {}", dir.display()))?;
        if dir.exists() {
            std::fs::remove_dir(dir).with_context(|| format!("replacing {}", dir.display()))?;
        }
        let kept = tmp.keep();
        std::fs::rename(&kept, dir).with_context(|| format!("renaming into {}", dir.display()))?;
        Ok(())
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Oci => "oci",
        Kind::Docker => "docker",
        Kind::Tar => "tar",
        Kind::Local => "local",
    }
}

/// An empty directory under the state root (the overlay's second lower directory).
fn scratch_dir(store: &Store) -> Result<tempfile::TempDir> {
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    tempfile::Builder::new()
        .prefix("output-")
        .tempdir_in(&tmp)
        .with_context(|| format!("creating a directory in {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_buildx_reads_them() {
        let o = OutputSpec::parse("out", None).unwrap();
        assert_eq!((o.kind, o.dest), (Kind::Local, Dest::Path("out".into())));
        let o = OutputSpec::parse("-", None).unwrap();
        assert_eq!((o.kind, o.dest), (Kind::Tar, Dest::Stdout));
        let o = OutputSpec::parse("type=oci,dest=x.tar,compression=zstd", Some("gzip")).unwrap();
        assert_eq!(o.kind, Kind::Oci);
        assert_eq!(o.compression, Compression::Zstd);
        let o = OutputSpec::parse("type=docker", Some("uncompressed")).unwrap();
        assert_eq!((o.dest, o.compression), (Dest::Stdout, Compression::None));
        for bad in [
            "type=image",
            "type=oci,foo=1",
            "type=local",
            "dest=x",
            "type=oci,compression=lz4",
        ] {
            assert!(OutputSpec::parse(bad, None).is_err(), "{bad}");
        }
    }
}
