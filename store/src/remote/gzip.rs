//! Parallel gzip of a plain layer on its way up, pigz-style (`gzp`): the input is cut into
//! blocks compressed on several threads, each primed with the last 32 KiB of the block before
//! and ended with a sync flush, so the blocks join into one deflate stream inside one gzip member
//! whose CRC is combined from the blocks'. Any gzip reader (a single-member one too) decodes it.
//!
//! Memory stays bounded: `gzp` keeps a few blocks per thread in flight, and its writer thread
//! hands the output straight to the given `Write` (the upload's [`ChunkSender`], which hashes it).
//!
//! [`ChunkSender`]: super::upload::ChunkSender

use std::io::{self, Read, Write};

use gzp::deflate::Gzip;
use gzp::par::compress::ParCompressBuilder;
use gzp::{GzpError, ZWriter};

/// Uncompressed bytes per block. Larger blocks than `gzp`'s 128 KiB default cost nothing in
/// ratio and halve the per-block overhead (bench/pushpull.sh).
pub const BLOCK: usize = 1 << 20;

/// Threads to compress with: every CPU this process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn gzp_err(e: GzpError) -> io::Error {
    match e {
        GzpError::Io(e) => e,
        other => io::Error::other(other),
    }
}

/// Gzip everything `src` yields into `out` at the default level with `threads` compressing
/// threads; returns `out` once the gzip trailer is written to it.
///
/// On an error (reading `src`, or `out` refusing bytes) the compressor is shut down and the
/// error returned; what `out` already received is then not a complete stream.
pub fn compress<R: Read, W: Write + Send + 'static>(
    mut src: R,
    out: W,
    threads: usize,
) -> io::Result<W> {
    let mut z = ParCompressBuilder::<Gzip>::new()
        .num_threads(threads.max(1))
        .map_err(gzp_err)?
        .buffer_size(BLOCK)
        .map_err(gzp_err)?
        .compression_level(gzp::Compression::default())
        .from_writer(out);
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Shut the pipeline down here: on drop `finish` panics if it fails. What it
                // writes is a complete stream of a truncated input, so the caller must not
                // publish it (the upload stops on this error, before its closing PUT).
                let _ = z.finish();
                return Err(e);
            }
        };
        // A failed write has already torn the pipeline down (and disarmed its drop).
        z.write_all(&buf[..n])?;
    }
    z.finish().map_err(gzp_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        // Half noise, half text: blocks of both kinds.
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut v: Vec<u8> = (0..n / 2)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        v.extend(b"all work and no play ".iter().cycle().take(n - n / 2));
        v
    }

    fn gunzip_single_member(gz: &[u8]) -> Vec<u8> {
        // `GzDecoder` (not `MultiGzDecoder`) stops after the first member: one member must hold
        // everything.
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn one_member_that_decodes_to_the_input() {
        let data = sample(5 * BLOCK + 12345);
        for threads in [1, 2, 4] {
            let gz = compress(&data[..], Vec::new(), threads).unwrap();
            assert_eq!(&gz[..2], &[0x1f, 0x8b]);
            assert_eq!(gunzip_single_member(&gz), data, "{threads} threads");
            // The trailer's ISIZE is the input length mod 2^32.
            let isize = u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap());
            assert_eq!(isize as usize, data.len());
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for data in [Vec::new(), b"x".to_vec()] {
            let gz = compress(&data[..], Vec::new(), 2).unwrap();
            assert_eq!(gunzip_single_member(&gz), data);
        }
    }

    #[test]
    fn read_errors_are_returned() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf.fill(7);
                Ok(buf.len())
            }
        }
        let err = compress(Failing(3), Vec::new(), 2).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    #[test]
    fn write_errors_are_returned() {
        #[derive(Debug)]
        struct Refusing;
        impl Write for Refusing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = sample(8 * BLOCK);
        let err = compress(&data[..], Refusing, 2).unwrap_err();
        assert!(err.to_string().contains("upload stopped"), "{err}");
    }
}
