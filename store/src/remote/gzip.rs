//! Parallel gzip of a plain layer on its way up (and into `build --output` archives), pigz-style (`gzp`): the input is cut into
//! blocks compressed on several threads, each primed with the last 32 KiB of the block before
//! and ended with a sync flush, so the blocks join into one deflate stream inside one gzip member
//! whose CRC is combined from the blocks'. Any gzip reader (a single-member one too) decodes it.
//!
//! A block whose bytes look random (already compressed files, which layers hold plenty of) is
//! stored rather than searched for matches: zlib would spend its full effort on it only to pick a
//! stored block in the end, so the output is the same size for a fraction of the time.
//!
//! Memory stays bounded: `gzp` keeps a few blocks per thread in flight, and its writer thread
//! hands the output straight to the given `Write` (the upload's [`ChunkSender`], which hashes it).
//!
//! [`ChunkSender`]: super::upload::ChunkSender

use std::io::{self, Read, Write};

use bytes::Bytes;
use flate2::{Compress, FlushCompress};
use gzp::check::Crc32;
use gzp::deflate::Gzip;
use gzp::par::compress::ParCompressBuilder;
use gzp::{Compression, FormatSpec, GzpError, ZWriter};

/// Uncompressed bytes per block. Larger blocks than `gzp`'s 128 KiB default cost nothing in
/// ratio and halve the per-block overhead (bench/pushpull.sh).
pub const BLOCK: usize = 1 << 20;

/// Threads to compress with: every CPU this process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Blocks at least this large are checked for randomness; smaller ones are just compressed.
const SNIFF_MIN: usize = 64 << 10;

/// Whether `block` looks incompressible: its order-0 entropy is within a hair of 8 bits a byte,
/// so Huffman coding gains nothing, and such bytes rarely repeat in a 32 KiB window either.
fn looks_random(block: &[u8]) -> bool {
    if block.len() < SNIFF_MIN {
        return false;
    }
    let mut counts = [[0u32; 256]; 4];
    let mut quads = block.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let n = block.len() as f64;
    let entropy: f64 = (0..256)
        .map(|i| counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i])
        .filter(|&c| c > 0)
        .map(|c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.99
}

/// `gzp`'s pigz-style gzip, except that random-looking blocks are stored (see the module doc).
#[derive(Clone, Copy, Debug)]
struct SkippingGzip;

impl FormatSpec for SkippingGzip {
    type C = Crc32;
    /// One compressor at the chosen level, one that only stores.
    type Compressor = (Compress, Compress);

    fn new() -> Self {
        SkippingGzip
    }

    fn needs_dict(&self) -> bool {
        true
    }

    fn create_compressor(&self, level: Compression) -> Result<Self::Compressor, GzpError> {
        Ok((
            Compress::new(level, false),
            Compress::new(Compression::none(), false),
        ))
    }

    fn encode(
        &self,
        input: &[u8],
        (deflate, store): &mut Self::Compressor,
        _level: Compression,
        dict: Option<&Bytes>,
        is_last: bool,
    ) -> Result<Vec<u8>, GzpError> {
        let c = if looks_random(input) { store } else { deflate };
        // Room for stored blocks' 5-byte headers and Huffman-coded expansion.
        let mut out = Vec::with_capacity(input.len() + input.len() / 10 + 128);
        if let Some(d) = dict {
            c.set_dictionary(d)?;
        }
        let flush = if is_last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        c.compress_vec(input, &mut out, flush)?;
        let consumed = c.total_in();
        c.reset();
        if consumed != input.len() as u64 {
            return Err(GzpError::Io(io::Error::other(format!(
                "gzip block: compressed {consumed} of {} bytes",
                input.len()
            ))));
        }
        Ok(out)
    }

    fn header(&self, level: Compression) -> Vec<u8> {
        Gzip {}.header(level)
    }

    fn footer(&self, check: &Self::C) -> Vec<u8> {
        Gzip {}.footer(check)
    }
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
    src: R,
    out: W,
    threads: usize,
) -> io::Result<W> {
    compress_level(src, out, threads, 6)
}

/// [`compress`] at gzip level `level` (0–9; larger values are taken as 9). The build exporter
/// uses it too (`build --output type=oci`).
pub fn compress_level<R: Read, W: Write + Send + 'static>(
    mut src: R,
    out: W,
    threads: usize,
    level: u32,
) -> io::Result<W> {
    let mut z = ParCompressBuilder::<SkippingGzip>::new()
        .num_threads(threads.max(1))
        .map_err(gzp_err)?
        .buffer_size(BLOCK)
        .map_err(gzp_err)?
        .compression_level(Compression::new(level.min(9)))
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
    fn random_blocks_are_stored_and_the_rest_compressed() {
        let data = sample(4 * BLOCK);
        let (noise, text) = data.split_at(2 * BLOCK);
        assert!(looks_random(&noise[..BLOCK]));
        assert!(!looks_random(&text[..BLOCK]));
        assert!(
            !looks_random(&noise[..1000]),
            "small blocks are not sniffed"
        );
        let gz = compress(&data[..], Vec::new(), 2).unwrap();
        assert_eq!(gunzip_single_member(&gz), data);
        // Noise costs its own size plus stored-block headers (5 bytes per 64 KiB).
        let noise_gz = compress(noise, Vec::new(), 2).unwrap();
        assert!(noise_gz.len() < noise.len() + 512, "{}", noise_gz.len());
        // Compressible bytes stay as small as a one-thread gzip at the same level makes them.
        let text_gz = compress(text, Vec::new(), 2).unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        let one = e.finish().unwrap();
        assert!(
            text_gz.len() <= one.len() + one.len() / 20 + 1024,
            "{} vs {}",
            text_gz.len(),
            one.len()
        );
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
