//! Shared helpers for integration tests that run the real Python koi-net 2.1.2 (`tests/py/`, installed by
//! `scripts/setup-python.sh`). Each test binary that uses them says `mod support;`.
#![allow(dead_code)]

pub mod pynet;
pub mod receiver;

#[allow(unused_imports)]
pub use pynet::{koi_tool, koi_tool_output, koi_tool_text, py_script, python};
