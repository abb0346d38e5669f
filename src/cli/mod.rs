//! The subcommands of `pyme-stream`, one file each.

pub mod serve;
