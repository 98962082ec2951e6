//! `edgeward`: one binary whose subcommands dispatch into the workspace crates.

fn main() {}
