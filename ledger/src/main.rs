//! `ledger`: runs the ledger (`ledger --config tollgate.toml`), prints its store
//! (`ledger dump [--raw]`) or rebuilds it from the log (`ledger rebuild`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ledger::config::{LedgerConfig, SourceConfig};

/// Tollgate's billing ledger: folds usage and entity events exactly once into its store and
/// answers usage, totals, billing exports and entity history over HTTP.
///
/// Reads the gateway's own tollgate.toml (`[node]`, `[events]`, `[ledger]`, `[quotas]`,
/// `[log]`). Without a subcommand it runs. SIGTERM or SIGINT stop it where it stands (every
/// commit is atomic; the next start resumes from the stored positions); SIGHUP re-reads the
/// file: `[log] level` changes at once, other changes are logged as needing a restart.
#[derive(Debug, Parser)]
#[command(name = "ledger", disable_version_flag = true)]
struct Cli {
    /// The node's config file (the gateway's tollgate.toml).
    #[arg(
        long,
        global = true,
        default_value = "tollgate.toml",
        value_name = "FILE"
    )]
    config: PathBuf,
    /// Print the version and the IO this build does.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fold the configured source and serve the query API (the default).
    ///
    /// Tails the embedded journal under `[node] data_dir`, or consumes Kafka when `[ledger]
    /// mode = "remote"` and `[events] sink = "kafka"`, committing aggregates and source
    /// positions in one transaction; serves the query API on `[ledger] addr`. Runs until
    /// SIGTERM or SIGINT.
    Run,
    /// Print the store (or, with --raw, the source log) as JSON lines.
    ///
    /// Without --raw: the store's aggregates, totals, producers, positions and quarantine; while
    /// a ledger or gateway runs on the store, that process writes the dump through its socket
    /// `<store>.sock`. With --raw: the source log itself, decoded usage batches and entity
    /// events; it reads the journal (or Kafka) without a lock, so it also works while a node
    /// runs.
    Dump {
        /// Print the source log instead of the store.
        #[arg(long)]
        raw: bool,
    },
    /// Replay the whole log into a fresh store and compare state hashes.
    ///
    /// Writes a fresh store (default `<store>.rebuild`, replaced) from the retained log and
    /// prints its state hash next to the live store's (read through the running ledger's socket
    /// `<store>.sock` while one runs; equal hashes need equal positions: compare them).
    Rebuild {
        /// Where the fresh store goes (default: `<store>.rebuild`, replaced).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.version {
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        println!("ledger {}", env!("CARGO_PKG_VERSION"));
        println!(
            "io: blocking threads (the fold, the query API's accept loop and one per connection); \
             no io_uring or epoll runtime"
        );
        println!("store: redb 2 (one file, one writer process)");
        println!("kafka client: librdkafka {librdkafka} (bundled)");
        return Ok(());
    }
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
    let logging = gateway_telemetry::init(&config.log);
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let reloader = gateway_telemetry::Reloader::new(&cli.config, logging);
            run(config, reloader)
        }
        Command::Dump { raw: false } => {
            let stdout = std::io::stdout();
            match ledger::Store::open(&config.store_path) {
                Ok(store) => store.dump(&mut stdout.lock())?,
                // A running ledger (or gateway) holds it: it dumps it through its socket.
                Err(e) if e.kind == ledger::LedgerErrorKind::Locked => {
                    ledger::local::ask(&config.store_path, "dump", &mut stdout.lock())
                        .map_err(|_| locked_hint(e, &config))?;
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        }
        Command::Dump { raw: true } => {
            ledger::rebuild::dump_raw(&config, &mut std::io::stdout().lock())?;
            Ok(())
        }
        Command::Rebuild { out } => {
            let out = out.unwrap_or_else(|| config.store_path.with_extension("redb.rebuild"));
            let report =
                ledger::rebuild::rebuild(&config, &out).map_err(|e| locked_hint(e, &config))?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{report}")?;
            Ok(())
        }
    }
}

/// A store held by a running process: what to use instead.
fn locked_hint(e: ledger::LedgerError, config: &LedgerConfig) -> anyhow::Error {
    if e.kind != ledger::LedgerErrorKind::Locked {
        return e.into();
    }
    let api = config
        .addr
        .map_or_else(|| "its ledger API".to_owned(), |a| format!("http://{a}"));
    anyhow::anyhow!(
        "{e}\nA running node or ledger holds the store and does not answer on {} (a build \
         before that socket, or a socket removed). While it runs: `curl {api}/api/state` (state \
         hash, positions, counters) or `ledger dump --raw` (the log, read without a lock); stop \
         it to use `ledger dump` or `ledger rebuild` on the file.",
        ledger::local::socket_path(&config.store_path).display()
    )
}

fn run(config: LedgerConfig, mut reloader: gateway_telemetry::Reloader) -> anyhow::Result<()> {
    let source = match &config.source {
        SourceConfig::Journal { data_dir } => format!("journal {}", data_dir.display()),
        SourceConfig::Kafka { brokers, group, .. } => format!("kafka {brokers} group {group}"),
    };
    let ledger = match ledger::Ledger::start(config.clone()) {
        Ok(ledger) => ledger,
        Err(e) if e.kind == ledger::LedgerErrorKind::Locked => {
            return Err(locked_hint(e, &config)).context("start the ledger");
        }
        Err(e) => {
            let in_use = e
                .source
                .as_deref()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse);
            return match (in_use, config.addr) {
                (true, Some(addr)) => bail!(
                    "start the ledger: ledger.addr {addr} is in use: another process listens \
                     there (a gateway with the embedded ledger? `ss -ltnp 'sport = :{}'` names \
                     it); stop it or change ledger.addr",
                    addr.port()
                ),
                _ => Err(e).context("start the ledger"),
            };
        }
    };
    eprintln!(
        "ledger: folding {source}; query API on {}",
        ledger
            .local_addr()
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    );
    // SIGHUP re-reads the config; SIGTERM/SIGINT keep their default action and end the process
    // where it stands: every commit is atomic and the next start resumes from the stored
    // positions, so there is nothing to drain.
    let hup = Arc::new(AtomicBool::new(false));
    match signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        Ok(_) => {
            let spawned = std::thread::Builder::new()
                .name("ledger-sighup".into())
                .spawn(move || {
                    loop {
                        if hup.swap(false, Ordering::AcqRel) {
                            reloader.reload();
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "SIGHUP will not re-read the config");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
    }
    ledger.wait();
    Ok(())
}
