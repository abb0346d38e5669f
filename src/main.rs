//! `pyme-stream`: the command-line program (being written).
fn main() {}
