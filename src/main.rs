//! `pyme-stream`: serve, stream, benchmark and demonstrate PYME cluster streaming.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pyme-stream",
    version,
    about = "Stream files to a PYME data-server cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a PYME-compatible data server.
    Serve(cli::serve::ServeArgs),
    /// Stream synthetic files and report throughput, latency and losses.
    Bench(cli::bench::BenchArgs),
    /// Stream local files and folders to the cluster.
    Put(cli::put::PutArgs),
    /// Encode raw frames as PZF files, or decode one.
    Pzf {
        #[command(subcommand)]
        command: cli::pzf::PzfCommand,
    },
    /// List the live data servers of a cluster (one line each: name, a tab, host:port).
    Discover(cli::discover::DiscoverArgs),
    /// Watch a cluster: a live page, Prometheus metrics and JSON of every server's status.
    Monitor(cli::monitor::MonitorArgs),
    /// Zero configuration: three local servers, a simulated acquisition, every file checked.
    Demo(cli::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => cli::bench::run(args),
        Command::Put(args) => cli::put::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Discover(args) => cli::discover::run(args),
        Command::Monitor(args) => cli::monitor::run(args).map(|()| ExitCode::SUCCESS),
        Command::Pzf { command } => cli::pzf::run(command).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pyme-stream: {error}");
            ExitCode::FAILURE
        }
    }
}
