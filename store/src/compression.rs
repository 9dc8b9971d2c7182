//! Recognising and undoing layer compression: by magic bytes for files a user hands us, by media
//! type for layers the store already describes.

use std::io::{self, BufRead, BufReader, Read};

use oci_spec::image::MediaType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: [u8; 3] = *b"BZh";
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0x00];

impl Compression {
    pub fn from_magic(head: &[u8]) -> io::Result<Compression> {
        if head.starts_with(&GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if head.starts_with(&XZ_MAGIC) || head.starts_with(&BZIP2_MAGIC) {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "xz and bzip2 archives are not supported; decompress first or use gzip/zstd",
            ))
        } else {
            Ok(Compression::None)
        }
    }

    /// The compression a layer media type implies (`None` for plain tar and for types we do not
    /// know, which are then treated as tar).
    pub fn from_media_type(mt: &MediaType) -> Compression {
        let s = mt.to_string();
        if s.ends_with("gzip") {
            Compression::Gzip
        } else if s.ends_with("zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn layer_media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

/// Wrap `r` in the decoder `c` calls for. The decoder's output is buffered in large blocks:
/// consumers like the tar parser read in small pieces, and inflating into 8 KiB at a time costs
/// about a fifth of zlib-ng's speed (bench/gunzip.sh).
pub fn decoder<'a, R: Read + 'a>(r: R, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    const OUT: usize = 1 << 18;
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            OUT,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, r)),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            OUT,
            zstd::stream::read::Decoder::new(r)?,
        )),
    })
}

/// Sniff the compression of a stream from its first bytes and return a reader of the
/// decompressed content.
pub fn auto_decoder<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf()?;
    let c = Compression::from_magic(head)?;
    Ok((c, decoder(br, c)?))
}

/// The decompressed length of a layer stream (Docker reports image sizes uncompressed); the
/// compression is sniffed from the first bytes. None when it does not decompress (the digest
/// check, not this, decides whether a layer is kept). Reads through the same large-block
/// decoder as unpacking does: inflating in small pieces costs most of zlib-ng's speed.
pub fn unpacked_len(r: impl Read) -> Option<u64> {
    struct Count(u64);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len() as u64;
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let (_, mut d) = auto_decoder(r).ok()?;
    let mut count = Count(0);
    io::copy(&mut d, &mut count).ok()?;
    Some(count.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sniffs_and_decodes_all_kinds() {
        let data = b"some tar bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for (bytes, kind) in [
            (data.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
        ] {
            let (c, mut r) = auto_decoder(&bytes[..]).unwrap();
            assert_eq!(c, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn refuses_xz_with_a_hint() {
        let err = auto_decoder(&XZ_MAGIC[..]).err().unwrap();
        assert!(err.to_string().contains("xz"));
    }

    #[test]
    fn unpacked_lengths_of_gzip_zstd_and_plain_streams() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 1).unwrap();
        for stream in [&gz[..], &zs[..], &data[..]] {
            assert_eq!(unpacked_len(stream), Some(data.len() as u64));
        }
        let mut bad = gz.clone();
        bad.truncate(gz.len() / 2);
        bad.extend_from_slice(&[0xff; 64]);
        assert_eq!(unpacked_len(&bad[..]), None);
        assert_eq!(unpacked_len(&b"ab"[..]), Some(2));
    }
}
