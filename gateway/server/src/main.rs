//! `gateway`: the Tollgate gateway node, the IO shell around gateway-core.
//!
//! Today it checks configurations (`gateway check --config F`); serving traffic arrives with the
//! data-plane issue. It must never hold the sans-IO logic itself: parsing, routing and key rules
//! live in gateway-core, entities in gateway-model.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gateway::config;

/// Tollgate: an API-management gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    /// Node configuration file (TOML). Without it, the quickstart runs.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration (and its seed entities) and report every bad field with its path.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Check), Some(path)) => check(&path),
        (Some(Command::Check), None) => {
            eprintln!("gateway check: --config FILE is required");
            ExitCode::from(2)
        }
        (None, _) => {
            eprintln!(
                "not yet: the gateway does not serve traffic in this version (the data plane is \
                 the next issue). `gateway check --config FILE` validates a configuration."
            );
            ExitCode::from(3)
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            let (routes, keys, backends, apis) = cfg.seed.as_ref().map_or((0, 0, 0, 0), |(_, i)| {
                let e = &i.entities;
                (e.routes.len(), e.apikeys.len(), e.backends.len(), e.apis.len())
            });
            println!(
                "{}: ok (node {}, {} cores, time zone {}; seed: {routes} routes, {backends} backends, \
                 {keys} API keys, {apis} APIs)",
                path.display(),
                cfg.node_id,
                cfg.cores,
                cfg.calendar.name()
            );
            if let Some((seed, import)) = &cfg.seed {
                for w in import.warnings.iter() {
                    println!("warning: {}: {w}", seed.display());
                }
                for s in &import.skipped {
                    println!("skipped: {}: {} ({})", seed.display(), s.path, s.reason);
                }
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in problems.iter() {
                eprintln!("{}: {p}", path.display());
            }
            eprintln!("{} problem(s)", problems.len());
            ExitCode::FAILURE
        }
    }
}
