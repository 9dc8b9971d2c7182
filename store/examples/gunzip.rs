//! `gunzip <file.gz>`: decompress a gzip layer the way the store does (flate2 on zlib-ng, with the
//! diff ID hashed in the same pass) and print the diff ID. With `NO_HASH=1` it only decompresses.
//! Used by bench/gunzip.sh.
use std::io::{self, BufReader};

use berth_store::compression::{Compression, decoder};
use berth_store::digest::HashingReader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: gunzip FILE.gz")?;
    let f = std::fs::File::open(path)?;
    let mut r = decoder(BufReader::with_capacity(1 << 20, f), Compression::Gzip)?;
    if std::env::var_os("NO_HASH").is_some() {
        println!("{}", io::copy(&mut r, &mut io::sink())?);
        return Ok(());
    }
    let (diff_id, size) = HashingReader::new(r).finish()?;
    println!("{diff_id} {size}");
    Ok(())
}
