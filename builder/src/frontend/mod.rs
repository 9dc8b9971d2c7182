//! The Dockerfile front end.
pub mod lex;
