//! The Dockerfile front end: [`parse`] reads the syntax (directives, instructions with their
//! lines, flags, arguments and heredocs) exactly as BuildKit does; [`plan::plan`] turns that
//! into build stages with variables expanded, ARG scoping applied and the `--target` chosen.
//!
//! ```
//! use berth_builder::frontend::{parse, plan::{plan, PlanOptions}};
//! let df = parse("ARG V=3\nFROM alpine:$V AS base\nRUN echo hi\n").unwrap();
//! let p = plan(&df, &PlanOptions::default()).unwrap();
//! assert_eq!(p.stages[0].name.as_deref(), Some("base"));
//! ```

mod directives;
mod dispatch;
mod error;
mod flags;
mod heredoc;
mod instruction;
pub mod lex;
pub mod mount;
mod parser;
pub mod plan;
mod words;

pub use directives::{Directive, Directives};
pub use error::{ParseError, ParseErrorKind};
pub use heredoc::Heredoc;

/// Reads one word as a heredoc marker (`<<EOF`, `<<-"EOF"`, `3<<EOF`).
pub fn heredoc_marker(word: &str) -> Option<Heredoc> {
    heredoc::parse_marker(word)
}
pub use instruction::{
    Arg, ArgDecl, Command, CommandLine, Copy, From, Healthcheck, Instruction, KeyValue, Keyword,
    Network, Onbuild, Run, Security, Source,
};
pub use parser::Warning;

/// A parsed Dockerfile: its directives and instructions, nothing expanded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives (`# syntax=`, `# escape=`, `# check=`).
    pub directives: Directives,
    /// Every instruction in file order, ARGs before the first FROM included.
    pub instructions: Vec<Instruction>,
    /// Things BuildKit warns about but accepts (empty continuation lines).
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// The escape character in force (`\` or `` ` ``).
    pub fn escape(&self) -> char {
        self.directives.escape
    }
}

/// Reads a Dockerfile's syntax. Fails on anything BuildKit's parser and instruction reader
/// reject: unknown instructions, missing or extra arguments, bad flags, unterminated
/// heredocs, a bad escape directive, no FROM, or instructions before the first FROM.
/// Instructions outside a Dockerfile (`import`/`commit --change`): typed as in a Dockerfile,
/// with no FROM needed.
pub fn parse_instructions(source: &str) -> Result<Dockerfile, ParseError> {
    let lines = parser::parse_lines(source)?;
    let escape = lines.directives.escape;
    let instructions = lines
        .lines
        .iter()
        .map(|l| dispatch::instruction(l, escape))
        .collect::<Result<_, _>>()?;
    Ok(Dockerfile {
        directives: lines.directives,
        instructions,
        warnings: lines.warnings,
    })
}

pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let lines = parser::parse_lines(source)?;
    let escape = lines.directives.escape;
    if lines.lines.is_empty() {
        let last = source.lines().count().max(1);
        return Err(ParseError {
            line: last,
            column: 1,
            kind: ParseErrorKind::NoInstructions,
        });
    }
    let mut instructions = Vec::with_capacity(lines.lines.len());
    let mut seen_from = false;
    for line in &lines.lines {
        let ins = dispatch::instruction(line, escape)?;
        match ins.keyword() {
            Keyword::From => seen_from = true,
            Keyword::Arg => {}
            k if !seen_from => {
                return Err(ParseError {
                    line: ins.start_line,
                    column: ins.column,
                    kind: ParseErrorKind::BeforeFrom {
                        instruction: k.to_string(),
                    },
                });
            }
            _ => {}
        }
        instructions.push(ins);
    }
    if !seen_from {
        return Err(ParseError {
            line: instructions[0].start_line,
            column: 1,
            kind: ParseErrorKind::NoFrom,
        });
    }
    Ok(Dockerfile {
        directives: lines.directives,
        instructions,
        warnings: lines.warnings,
    })
}

#[cfg(test)]
mod tests;
