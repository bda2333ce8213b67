//! Library target so the workspace can name this crate; the programs live in `main.rs`.
#![no_std]
