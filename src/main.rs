//! berth: build, registry and run, in one daemonless binary.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_level.as_deref());
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One clear line: the outermost context and the root cause, without repeats.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("Error: {msg}");
            ExitCode::from(1)
        }
    }
}
