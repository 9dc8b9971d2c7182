//! berth-builder: turns a Dockerfile and its build context into an image.
//!
//! So far this crate holds the front end only: [`frontend`] reads a Dockerfile exactly as
//! BuildKit does (syntax, parser directives, heredocs, the shell-word lexer and variable
//! expansion, ARG scoping, stages and `--target`), and [`ignore`] implements `.dockerignore`
//! matching. Nothing here executes a step or writes an image yet.

pub mod frontend;
pub mod ignore;
