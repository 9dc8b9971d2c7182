//! The real-Dockerfile corpus: every file BuildKit accepts must give BuildKit's instruction
//! sequence (keywords and line ranges) exactly; every file it rejects must fail in `parse`, or
//! in `plan` with default options. All mismatches are reported at once.

use std::path::PathBuf;

use berth_builder::frontend::{parse, plan};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("BERTH_DOCKERFILES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/dockerfiles"),
    }
}

/// `KEYWORD@start[-end][+Nheredoc]` for each instruction, as REFERENCE.tsv writes it.
fn sequence(df: &berth_builder::frontend::Dockerfile) -> String {
    df.instructions
        .iter()
        .map(|i| {
            let mut s = if i.start_line == i.end_line {
                format!("{}@{}", i.keyword(), i.start_line)
            } else {
                format!("{}@{}-{}", i.keyword(), i.start_line, i.end_line)
            };
            if !i.heredocs.is_empty() {
                s.push_str(&format!("+{}heredoc", i.heredocs.len()));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn corpus_matches_buildkit() {
    let dir = corpus_dir();
    let tsv_path = dir.join("REFERENCE.tsv");
    let tsv = std::fs::read_to_string(&tsv_path).unwrap_or_else(|e| {
        panic!(
            "the Dockerfile corpus is missing ({}: {e}); set BERTH_DOCKERFILES to its folder",
            tsv_path.display()
        )
    });
    let mut header = None;
    // Informative: how many files BuildKit accepts also plan with default options (some need
    // --build-arg values, or are only valid to BuildKit's parser).
    let (mut planned, mut parsed_ok) = (0, 0);
    let mut failures = Vec::new();
    let (mut valid, mut valid_ok, mut invalid, mut invalid_ok) = (0, 0, 0, 0);
    for line in tsv.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let Some(h) = &header else {
            header = Some(cols.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            continue;
        };
        let col = |name: &str| {
            h.iter()
                .position(|c| c == name)
                .and_then(|i| cols.get(i).copied())
                .unwrap_or("")
        };
        let file = col("file");
        let bytes = match std::fs::read(dir.join(file)) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{file}: cannot read: {e}"));
                continue;
            }
        };
        let source = String::from_utf8_lossy(&bytes);
        let parsed = parse(&source);
        if col("buildkit_valid") == "yes" {
            valid += 1;
            match parsed {
                Ok(df) => {
                    parsed_ok += 1;
                    if plan::plan(&df, &plan::PlanOptions::default()).is_ok() {
                        planned += 1;
                    }
                    let got = sequence(&df);
                    if got == col("instructions") {
                        valid_ok += 1;
                    } else {
                        failures.push(format!(
                            "{file}: instruction sequence differs\n  expected {}\n  got      {got}",
                            col("instructions")
                        ));
                    }
                }
                Err(e) => failures.push(format!("{file}: rejected a valid file: {e}")),
            }
        } else {
            invalid += 1;
            let rejected = match parsed {
                Err(_) => true,
                Ok(df) => plan::plan(&df, &plan::PlanOptions::default()).is_err(),
            };
            if rejected {
                invalid_ok += 1;
            } else {
                failures.push(format!(
                    "{file}: accepted, but BuildKit rejects it ({})",
                    col("invalid_reason")
                ));
            }
        }
    }
    eprintln!(
        "corpus: {valid_ok}/{valid} valid files matched, {invalid_ok}/{invalid} invalid files rejected; {planned}/{parsed_ok} valid files plan with default options"
    );
    assert!(valid + invalid > 0, "REFERENCE.tsv lists no files");
    assert!(
        failures.is_empty(),
        "{} corpus mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
