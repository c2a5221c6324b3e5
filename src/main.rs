//! The `dainet` command line.
mod plot;

fn main() {}
