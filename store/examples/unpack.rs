//! `unpack <tar-file> <dest-dir>`: unpacks an uncompressed layer tar with
//! `berth_store::extract::unpack_layer` (creating `dest-dir` if needed), for benchmarks.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [tar, dest] = args.as_slice() else {
        eprintln!("usage: unpack <tar-file> <dest-dir>");
        return ExitCode::from(2);
    };
    let file = match std::fs::File::open(tar) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("unpack: {}: {e}", tar.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    let dest = std::path::Path::new(dest);
    if let Err(e) = std::fs::create_dir_all(dest) {
        eprintln!("unpack: {}: {e}", dest.display());
        return ExitCode::FAILURE;
    }
    match berth_store::extract::unpack_layer(file, dest) {
        Ok(stats) => {
            eprintln!("unpack: {} entries, {} bytes", stats.entries, stats.bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unpack: {e}");
            ExitCode::FAILURE
        }
    }
}
