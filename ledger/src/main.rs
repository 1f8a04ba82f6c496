//! `ledger`: runs the ledger (`ledger --config tollgate.toml`), prints its store
//! (`ledger dump [--raw]`) or rebuilds it from the log (`ledger rebuild`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ledger::config::{LedgerConfig, SourceConfig};

#[derive(Debug, Parser)]
#[command(name = "ledger", version, about = "Tollgate's billing ledger")]
struct Cli {
    /// The node's config file (the gateway's tollgate.toml).
    #[arg(long, global = true, default_value = "tollgate.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run: fold the configured source and serve the query API (the default).
    Run,
    /// Print the store's aggregates, totals, producers, positions and quarantine as JSON
    /// lines; with --raw, the raw log (decoded usage batches and entity events) instead.
    Dump {
        /// Print the source log instead of the store.
        #[arg(long)]
        raw: bool,
    },
    /// Replay the whole log into a fresh store and print its state hash, next to the live
    /// store's (the ledger must be stopped: the store file is locked while it runs).
    Rebuild {
        /// Where the fresh store goes (default: `<store>.rebuild`, replaced).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match LedgerConfig::load(&cli.config) {
        Ok(c) => c,
        Err(problems) => {
            for (path, message) in &problems.0 {
                if path.is_empty() {
                    eprintln!("{}: {message}", cli.config.display());
                } else {
                    eprintln!("{}: {path}: {message}", cli.config.display());
                }
            }
            bail!(
                "{} problem(s) in {}",
                problems.0.len(),
                cli.config.display()
            );
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(config),
        Command::Dump { raw: false } => {
            let store = ledger::Store::open(&config.store_path)?;
            let stdout = std::io::stdout();
            store.dump(&mut stdout.lock())?;
            Ok(())
        }
        Command::Dump { raw: true } => {
            ledger::rebuild::dump_raw(&config, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Rebuild { out } => {
            let out = out.unwrap_or_else(|| config.store_path.with_extension("redb.rebuild"));
            let report = ledger::rebuild::rebuild(&config, &out)?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{report}")?;
            Ok(())
        }
    }
}

fn run(config: LedgerConfig) -> anyhow::Result<()> {
    let source = match &config.source {
        SourceConfig::Journal { data_dir } => format!("journal {}", data_dir.display()),
        SourceConfig::Kafka { brokers, group, .. } => format!("kafka {brokers} group {group}"),
    };
    let ledger = ledger::Ledger::start(config).context("start the ledger")?;
    eprintln!(
        "ledger: folding {source}; query API on {}",
        ledger
            .local_addr()
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    );
    // SIGTERM/SIGINT end the process where it stands: every commit is atomic and the next
    // start resumes from the stored positions, so there is nothing to drain.
    ledger.wait();
    Ok(())
}
