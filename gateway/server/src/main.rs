//! `gateway`: a Tollgate gateway node, the IO shell around gateway-core.
//!
//! `gateway --config F` runs a node, `gateway` alone runs the quickstart, `gateway check
//! --config F` validates a configuration. It must never hold the sans-IO logic itself: parsing,
//! routing and key rules live in gateway-core, entities in gateway-model.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::config::{self, HttpLimits};
use gateway::node::{Node, NodeOptions};
use gateway::quickstart;
use gateway::runtime::IoMode;

/// Tollgate: an API-management gateway.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    /// Node configuration file (TOML). Without it, the quickstart runs.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// IO driver: auto (io_uring, else epoll), uring, epoll.
    #[arg(long, global = true, default_value = "auto")]
    io: IoMode,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration (and its seed entities) and report every bad field with its path.
    Check,
    /// Read the event streams.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Import an Otoroshi export or a Tollgate entity file into the node's entity log: directly
    /// when the node is stopped, through its admin API (`POST /api/import`) when it runs.
    /// Without `--config`, into the (stopped) quickstart's log.
    Import {
        /// The JSON document (keys `routes`, `backends`, `apiKeys`, `apis`).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print usage, entity and totals events as JSON lines, from the journal or from Kafka
    /// (per `--config`; without it, the quickstart's journal), following new ones.
    Tail {
        /// Start at the first retained event instead of the end.
        #[arg(long)]
        from_start: bool,
        /// Stop once caught up instead of following.
        #[arg(long)]
        once: bool,
        /// Which stream.
        #[arg(long, value_enum, default_value = "all")]
        stream: gateway::tail::Which,
        /// Read the embedded journal under this data directory (even when Kafka is configured).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match (cli.command, cli.config) {
        (Some(Command::Check), Some(path)) => check(&path),
        (Some(Command::Check), None) => {
            eprintln!("gateway check: --config FILE is required");
            ExitCode::from(2)
        }
        (
            Some(Command::Events(EventsCommand::Tail {
                from_start,
                once,
                stream,
                data_dir,
            })),
            config,
        ) => tail(
            config.as_deref(),
            data_dir,
            gateway::tail::TailOptions {
                which: stream,
                from_start,
                once,
            },
        ),
        (Some(Command::Import { file }), config) => {
            match gateway::admin::import_command(config.as_deref(), &file) {
                Ok(report) => {
                    println!("{report:#}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("gateway import: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        (None, Some(path)) => run(&path, cli.io),
        (None, None) => run_quickstart(cli.io),
    }
}

fn tail(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
    options: gateway::tail::TailOptions,
) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = match (config, data_dir) {
        (_, Some(dir)) => gateway::tail::journal(&dir, options, &mut out),
        (None, None) => gateway::tail::journal(
            &std::env::temp_dir().join("tollgate-quickstart"),
            options,
            &mut out,
        ),
        (Some(path), None) => match config::load(path) {
            Err(problems) => {
                for p in problems.iter() {
                    eprintln!("{}: {p}", path.display());
                }
                return ExitCode::FAILURE;
            }
            Ok(cfg) => match cfg.kafka() {
                None => gateway::tail::journal(&cfg.data_dir, options, &mut out),
                Some(k) => gateway::tail::kafka(&k.brokers, &k.topics, options, &mut out),
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway events tail: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            tracing::warn!(error = %e, signal, "cannot handle signal");
        }
    }
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn raise_fd_limit() {
    #[allow(unsafe_code)]
    // SAFETY: getrlimit/setrlimit only read and write the `rlimit` struct we pass by pointer,
    // which lives on this stack frame for the duration of both calls.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// How often the in-process ledger reads and commits once caught up.
const EMBEDDED_LEDGER_POLL: Duration = Duration::from_millis(500);

fn serve(
    options: &NodeOptions,
    log: gateway::entitylog::EntityLog,
    mut admin: gateway::admin::AdminOptions,
    ledger: Option<ledger::LedgerConfig>,
) -> ExitCode {
    raise_fd_limit();
    let entities = log.state().entities(gateway::entitylog::now_ms());
    let node = match Node::start(options, entities) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    node.apply_quota_resets(&log.state().quota_resets());
    admin.driver = node.driver().to_string();
    let admin = match gateway::admin::start(admin, log, node.publisher()) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("gateway: cannot start the admin API: {e}");
            node.shutdown();
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(admin_addr = %admin.addr(), "admin API listening");
    // `[ledger] mode = "embedded"`: the ledger folds this node's journal in-process, committing
    // at most twice a second (it shares the machine with the cores; nothing in the gateway
    // waits on it, and billing reads tolerate half a second).
    let ledger = ledger.map(|mut l| {
        l.poll = EMBEDDED_LEDGER_POLL;
        l
    });
    let ledger = match ledger.map(ledger::Ledger::start).transpose() {
        Ok(ledger) => ledger,
        Err(e) => {
            eprintln!("gateway: cannot start the embedded ledger: {e}");
            admin.shutdown();
            node.shutdown();
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = ledger.as_ref().and_then(ledger::Ledger::local_addr) {
        tracing::info!(ledger_addr = %addr, "ledger query API listening");
    }
    if let Some(https) = node.https_addr() {
        tracing::info!(https_addr = %https, "HTTPS listening");
    }
    tracing::info!(addr = %node.addr(), cores = options.cores, driver = %node.driver(), "serving");
    wait_for_signal();
    tracing::info!("shutting down: draining in-flight requests");
    admin.shutdown();
    node.shutdown();
    // After the node's last usage flush; what the ledger has not folded yet it folds at its
    // next start (its position is stored with its aggregates).
    if let Some(ledger) = ledger {
        ledger.shutdown();
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn run(path: &std::path::Path, io: IoMode) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(problems) => {
            for p in problems.iter() {
                eprintln!("{}: {p}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let https = match &cfg.https {
        Some(files) => match files.load() {
            Ok(tls) => Some(gateway::node::HttpsOptions {
                addr: files.addr,
                tls: std::sync::Arc::new(tls),
                ticket_rotation: files.ticket_rotation,
            }),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let ledger = match cfg.ledger_mode {
        config::LedgerMode::Remote => None,
        config::LedgerMode::Embedded => match ledger::LedgerConfig::load(path) {
            Ok(l) => Some(l),
            Err(problems) => {
                for (field, message) in &problems.0 {
                    eprintln!("{}: {field}: {message}", path.display());
                }
                return ExitCode::FAILURE;
            }
        },
    };
    let (log, admin) = match gateway::admin::open_for(&cfg) {
        Ok(opened) => opened,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kafka = cfg.kafka();
    let options = NodeOptions {
        node_id: cfg.node_id,
        cores: cfg.cores,
        pin: true,
        http: cfg.http,
        https,
        limits: cfg.limits,
        io,
        resolve_every: Duration::from_secs(30),
        calendar: cfg.calendar,
        data_dir: Some(cfg.data_dir),
        kafka,
        journal: cfg.journal,
    };
    serve(&options, log, admin, ledger)
}

fn run_quickstart(io: IoMode) -> ExitCode {
    let secret = quickstart::random_hex(16);
    let entities = quickstart::entities(&secret);
    let data_dir = std::env::temp_dir().join("tollgate-quickstart");
    let log = match gateway::admin::open_quickstart(&data_dir, &entities) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let token = quickstart::random_hex(16);
    let admin = gateway::admin::AdminOptions {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], 9000)),
        token: gateway_model::entity::Secret::new(token.clone()),
        previous_secret_grace_ms: 3_600_000,
        rotation_every: Duration::from_secs(1),
        clock: gateway::admin::system_clock(),
        public_url: "http://127.0.0.1:8080".to_owned(),
        driver: String::new(),
        kafka: None,
        http: gateway_httpd::Limits::default(),
    };
    let options = NodeOptions {
        node_id: "quickstart".to_owned(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        pin: true,
        http: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 8080))),
        https: None,
        limits: HttpLimits::default(),
        io,
        resolve_every: Duration::from_secs(30),
        calendar: gateway_core::window::Calendar::utc(),
        data_dir: Some(data_dir.clone()),
        kafka: None,
        journal: Default::default(),
    };
    let mut ledger = ledger::LedgerConfig::journal(&data_dir);
    ledger.addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9100)));
    println!(
        "Tollgate quickstart: a demo API on http://127.0.0.1:8080 (mock backend, no upstream needed)"
    );
    println!();
    println!("  public route:  curl -i http://127.0.0.1:8080/public");
    println!("  keyed route:   curl -i http://127.0.0.1:8080/api \\");
    println!(
        "                      -H 'Otoroshi-Client-Id: demo-client' -H 'Otoroshi-Client-Secret: {secret}'"
    );
    println!("  without a key: curl -i http://127.0.0.1:8080/api      (400 no_api_key)");
    println!();
    println!("Demo key: demo-client / {secret} (generated for this run). Ctrl-C stops the node.");
    println!("The demo key allows 100 calls/s, 1000 a day: watch Otoroshi-Daily-Calls-Remaining.");
    println!();
    println!("Admin API on http://127.0.0.1:9000 (token generated for this run: {token}):");
    println!("  curl -s http://127.0.0.1:9000/api/apikeys -H 'Authorization: Bearer {token}'");
    println!("  curl -s http://127.0.0.1:9000/api/events -H 'Authorization: Bearer {token}'");
    println!("  curl -s http://127.0.0.1:9000/openapi.json");
    println!();
    println!("Ledger (usage for billing) on http://127.0.0.1:9100:");
    println!("  curl -s 'http://127.0.0.1:9100/api/usage?apikey=demo-client&granularity=day'");
    println!("  curl -s 'http://127.0.0.1:9100/api/totals?apikey=demo-client'");
    serve(&options, log, admin, Some(ledger))
}

fn check(path: &std::path::Path) -> ExitCode {
    // The ledger's own fields (`[ledger] grace_secs`, …) are part of the same file.
    if let Err(problems) = ledger::LedgerConfig::load(path) {
        if config::load(path).is_ok() {
            for (field, message) in &problems.0 {
                eprintln!("{}: {field}: {message}", path.display());
            }
            eprintln!("{} problem(s)", problems.0.len());
            return ExitCode::FAILURE;
        }
    }
    match config::load(path) {
        Ok(cfg) => {
            let (routes, keys, backends, apis) =
                cfg.seed.as_ref().map_or((0, 0, 0, 0), |(_, i)| {
                    let e = &i.entities;
                    (
                        e.routes.len(),
                        e.apikeys.len(),
                        e.backends.len(),
                        e.apis.len(),
                    )
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
