//! `gateway`: a Tollgate gateway node, the IO shell around gateway-core.
//!
//! `gateway --config F` runs a node, `gateway` alone runs the quickstart, `gateway check
//! --config F` validates a configuration. It must never hold the sans-IO logic itself: parsing,
//! routing and key rules live in gateway-core, entities in gateway-model.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gateway::config::{self, HttpLimits};
use gateway::node::{Node, NodeOptions};
use gateway::quickstart;
use gateway::runtime::IoMode;
use gateway_telemetry::{LogHandle, LogSettings};

/// Tollgate: an API-management gateway (thread-per-core reverse proxy, API keys, quotas, usage
/// for billing).
///
/// `gateway --config FILE` runs a node; `gateway` alone runs the quickstart: a demo API with a
/// mock backend and a generated key on 127.0.0.1:8080, the admin API on 127.0.0.1:9000 and the
/// ledger's usage API on 127.0.0.1:9100 (ports set with --http-port, --admin-port,
/// --ledger-port; state under --data-dir, default $TMPDIR/tollgate-quickstart).
///
/// SIGTERM or SIGINT drain and stop the node; SIGHUP re-reads the config file: `[log] level`
/// changes at once, other changes are logged as needing a restart.
#[derive(Debug, Parser)]
#[command(name = "gateway", disable_version_flag = true)]
struct Cli {
    /// Node configuration file (TOML) to run; without it, the quickstart runs.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// IO driver of the cores: auto (io_uring, else epoll), uring (io_uring or fail), epoll.
    #[arg(long, default_value = "auto", value_name = "DRIVER")]
    io: IoMode,
    /// Print the version and the IO drivers of this build, and whether io_uring works here.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(flatten)]
    quickstart: QuickstartArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The quickstart's addresses and state (only without --config).
#[derive(Debug, Args)]
#[command(next_help_heading = "Quickstart (without --config)")]
struct QuickstartArgs {
    /// Port of the demo API on 127.0.0.1 (default 8080; 0 picks a free port, printed at start).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Port of the admin API on 127.0.0.1 (default 9000; 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    admin_port: Option<u16>,
    /// Port of the ledger's usage API on 127.0.0.1 (default 9100; 0 picks a free port).
    #[arg(long, value_name = "PORT")]
    ledger_port: Option<u16>,
    /// Where the quickstart keeps its entity log, usage journal and ledger store (default
    /// $TMPDIR/tollgate-quickstart, kept between runs). `events tail` and `import` without
    /// --config read the same directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl QuickstartArgs {
    fn any(&self) -> bool {
        self.http_port.is_some() || self.admin_port.is_some() || self.ledger_port.is_some()
    }

    fn dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("tollgate-quickstart"))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration and report every problem with the path of its key.
    ///
    /// Reads FILE and its seed entity file and reports, each with the path of its key: unknown
    /// keys, values of the wrong type, bad values (all of them, not only the first), certificate
    /// files that cannot be read, listener addresses that another process already uses, and a
    /// data directory that cannot be written. Prints a summary and exits 0 when all is well,
    /// else prints every problem on stderr and exits 1. Starts nothing and writes nothing.
    ///
    /// Example: gateway check --config /etc/tollgate/tollgate.toml
    Check {
        /// The configuration file to check.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Read the event streams (usage batches, entity events, per-key totals).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Import an Otoroshi export or a Tollgate entity file into a node's entity log.
    ///
    /// Imports the routes, backends, API keys and APIs of FILE into the entity log of the node
    /// of --config: directly when the node is stopped, through its admin API (`POST
    /// /api/import`, with the config's admin token) when it runs. Without --config, into the
    /// stopped quickstart's log (under --data-dir). Prints the import report: what was
    /// imported, and what was skipped and why.
    ///
    /// Example: gateway import fixtures/otoroshi/otoroshi-export-tunnel.json --config tollgate.toml
    Import {
        /// The JSON document (keys `routes`, `backends`, `apiKeys`, `apis`).
        file: PathBuf,
        /// The node's configuration file (default: the quickstart's log).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Print events as JSON lines, from the embedded journal or from Kafka.
    ///
    /// One line per record on stdout: `{"stream": "usage", "offset": 7, "event": {…}}` (plus
    /// `"partition"` from Kafka). Reads Kafka when the config says `[events] sink = "kafka"`,
    /// else the journal under the config's `data_dir`; --data-dir reads a journal directly;
    /// with neither, the quickstart's. Starts at the end and follows new events until Ctrl-C;
    /// --from-start begins at the first retained event, --once stops when caught up and says
    /// on stderr how many events it printed from where.
    ///
    /// Example: gateway events tail --config tollgate.toml --from-start --once
    Tail {
        /// The node's configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
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
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        println!("gateway {}", env!("CARGO_PKG_VERSION"));
        println!("{}", gateway::runtime::io_features());
        let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
        println!("kafka client: librdkafka {librdkafka} (bundled)");
        return ExitCode::SUCCESS;
    }
    if cli.command.is_some() && cli.quickstart.any() {
        eprintln!(
            "gateway: --http-port, --admin-port and --ledger-port set the quickstart's ports"
        );
        return ExitCode::from(2);
    }
    if cli.config.is_some() && (cli.quickstart.any() || cli.quickstart.data_dir.is_some()) {
        eprintln!(
            "gateway: --http-port, --admin-port, --ledger-port and --data-dir are the \
             quickstart's; with --config, set [listeners.http] addr, [admin] addr, [ledger] addr \
             and [node] data_dir in the file"
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Check { config }) => match config.or(cli.config) {
            Some(path) => {
                let _logging = gateway_telemetry::init(&LogSettings::default());
                check(&path)
            }
            None => {
                eprintln!("gateway check: --config FILE is required");
                ExitCode::from(2)
            }
        },
        Some(Command::Events(EventsCommand::Tail {
            config,
            from_start,
            once,
            stream,
            data_dir,
        })) => {
            let _logging = gateway_telemetry::init(&LogSettings::default());
            let data_dir = match (&config, &cli.config, data_dir) {
                (None, None, None) => Some(cli.quickstart.dir()),
                (_, _, dir) => dir,
            };
            tail(
                config.or(cli.config).as_deref(),
                data_dir,
                gateway::tail::TailOptions {
                    which: stream,
                    from_start,
                    once,
                },
            )
        }
        Some(Command::Import { file, config }) => {
            let _logging = gateway_telemetry::init(&LogSettings::default());
            let config = config.or(cli.config);
            let quickstart_dir = cli.quickstart.dir();
            match gateway::admin::import_command(config.as_deref(), &quickstart_dir, &file) {
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
        None => match cli.config {
            Some(path) => run(&path, cli.io),
            None => run_quickstart(cli.io, &cli.quickstart),
        },
    }
}

fn tail(
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
    options: gateway::tail::TailOptions,
) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let (source, result) = match (config, data_dir) {
        (_, Some(dir)) => (
            format!("journal {}", dir.join("journal").display()),
            gateway::tail::journal(&dir, options, &mut out),
        ),
        (Some(path), None) => match config::load(path) {
            Err(problems) => {
                for p in problems.iter() {
                    eprintln!("{}: {p}", path.display());
                }
                return ExitCode::FAILURE;
            }
            Ok(cfg) => match cfg.kafka() {
                None => (
                    format!("journal {}", cfg.data_dir.join("journal").display()),
                    gateway::tail::journal(&cfg.data_dir, options, &mut out),
                ),
                Some(k) => (
                    format!("kafka {}", k.brokers),
                    gateway::tail::kafka(&k.brokers, &k.topics, options, &mut out),
                ),
            },
        },
        (None, None) => {
            eprintln!("gateway events tail: give --config FILE or --data-dir DIR");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(report) => {
            if options.once {
                eprintln!("{}", report.summary(&source, options.from_start));
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway events tail: {source}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGTERM or SIGINT; calls `on_hup` at each SIGHUP.
fn wait_for_signal(mut on_hup: impl FnMut()) {
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            tracing::warn!(error = %e, signal, "cannot handle signal");
        }
    }
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()) {
        tracing::warn!(error = %e, "cannot handle SIGHUP");
    }
    while !stop.load(Ordering::Acquire) {
        if hup.swap(false, Ordering::AcqRel) {
            on_hup();
        }
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

/// What names each address in an error: a config key, or the quickstart's flag.
#[derive(Debug, Clone, Copy)]
struct Keys {
    http: &'static str,
    https: &'static str,
    admin: &'static str,
    ledger: &'static str,
}

const CONFIG_KEYS: Keys = Keys {
    http: "listeners.http.addr",
    https: "listeners.https.addr",
    admin: "admin.addr",
    ledger: "ledger.addr",
};

const QUICKSTART_FLAGS: Keys = Keys {
    http: "--http-port",
    https: "--https-port",
    admin: "--admin-port",
    ledger: "--ledger-port",
};

/// A bind failure that says what to do, naming `key`; other errors as they are.
fn bind_error(key: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "{key} {addr} is in use: another process listens there (a node already running? \
             `ss -ltnp 'sport = :{}'` names it); stop it or change {key}",
            addr.port()
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "{key} {addr}: not an address of this machine; use one of its addresses, 127.0.0.1 \
             or 0.0.0.0"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{key} {addr}: permission denied (ports below 1024 need root or \
             CAP_NET_BIND_SERVICE); use a port ≥ 1024 or grant the capability"
        ),
        _ => format!("{key} {addr}: {e}"),
    }
}

/// The io::Error under a ledger error, if that is what it is.
fn io_source(e: &ledger::LedgerError) -> Option<&std::io::Error> {
    e.source
        .as_deref()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
}

/// The addresses a node ended up on (ports 0 resolved).
#[derive(Debug, Clone, Copy)]
struct Bound {
    http: SocketAddr,
    admin: SocketAddr,
    ledger: Option<SocketAddr>,
}

/// What [`serve`] runs.
struct Serve {
    options: NodeOptions,
    log: gateway::entitylog::EntityLog,
    admin: gateway::admin::AdminOptions,
    ledger: Option<ledger::LedgerConfig>,
    keys: Keys,
    /// Re-reads the config file on SIGHUP; `None`: the quickstart, which has no file.
    reloader: Option<gateway_telemetry::Reloader>,
}

fn serve(s: Serve, on_ready: impl FnOnce(&Bound)) -> ExitCode {
    let Serve {
        options,
        log,
        mut admin,
        ledger,
        keys,
        mut reloader,
    } = s;
    raise_fd_limit();
    let entities = gateway::admin::publishable(log.state(), gateway::entitylog::now_ms());
    let node = match Node::start(&options, entities) {
        Ok(node) => node,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // Which listener: the first configured address that cannot be bound now.
            let listeners = [
                (keys.http, options.http),
                (keys.https, options.https.as_ref().map(|h| h.addr)),
            ];
            let busy = listeners.into_iter().find_map(|(key, addr)| {
                addr.filter(|a| std::net::TcpListener::bind(a).is_err())
                    .map(|a| (key, a))
            });
            match busy {
                Some((key, addr)) => {
                    eprintln!("gateway: cannot start: {}", bind_error(key, addr, &e));
                }
                None => eprintln!("gateway: cannot start: {e}"),
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("gateway: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    node.apply_quota_resets(&log.state().quota_resets());
    // `[access_log] sample` changes at once on SIGHUP (the cores take it within a tick).
    if let Some(counters) = node.access_counters() {
        reloader = reloader.map(|r| {
            r.with(
                "access_log.sample",
                Box::new(move |file: &gateway_model::config::FileConfig| {
                    let sample = file.access_log.sample.unwrap_or(1.0);
                    if !(0.0..=1.0).contains(&sample) {
                        return None;
                    }
                    let threshold = gateway::access::threshold(sample);
                    let old = counters
                        .sample_threshold
                        .swap(threshold, std::sync::atomic::Ordering::Relaxed);
                    (old != threshold).then(|| format!("access log sample {sample}"))
                }),
            )
        });
    }
    admin.driver = node.driver().to_string();
    if options.http.is_some_and(|a| a.port() == 0) {
        // Call examples name the port the node really listens on.
        admin.public_url = format!("http://{}", node.addr());
    }
    let admin_addr = admin.addr;
    let admin = match gateway::admin::start(admin, log, node.publisher()) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!(
                "gateway: cannot start the admin API: {}",
                bind_error(keys.admin, admin_addr, &e)
            );
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
    let ledger_addr = ledger.as_ref().and_then(|l| l.addr);
    let ledger = match ledger.map(ledger::Ledger::start).transpose() {
        Ok(ledger) => ledger,
        Err(e) => {
            let why = match (io_source(&e), ledger_addr) {
                (Some(io), Some(addr)) if io.kind() == std::io::ErrorKind::AddrInUse => {
                    bind_error(keys.ledger, addr, io)
                }
                _ => e.to_string(),
            };
            eprintln!("gateway: cannot start the embedded ledger: {why}");
            admin.shutdown();
            node.shutdown();
            return ExitCode::FAILURE;
        }
    };
    let bound = Bound {
        http: node.addr(),
        admin: admin.addr(),
        ledger: ledger.as_ref().and_then(ledger::Ledger::local_addr),
    };
    if let Some(addr) = bound.ledger {
        tracing::info!(ledger_addr = %addr, "ledger query API listening");
    }
    if let Some(https) = node.https_addr() {
        tracing::info!(https_addr = %https, "HTTPS listening");
    }
    tracing::info!(addr = %node.addr(), cores = options.cores, driver = %node.driver(), "serving");
    on_ready(&bound);
    wait_for_signal(|| match reloader.as_mut() {
        Some(r) => r.reload(),
        None => tracing::info!("SIGHUP: the quickstart has no config file to re-read"),
    });
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

fn print_problems(path: &Path, problems: &gateway_model::validate::Problems) {
    for p in problems.iter() {
        eprintln!("{}: {p}", path.display());
    }
}

fn run(path: &Path, io: IoMode) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(problems) => {
            print_problems(path, &problems);
            eprintln!(
                "{} problem(s); `gateway check --config {}` also checks ports and files",
                problems.len(),
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let logging = gateway_telemetry::init(&cfg.log);
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
        access_log: cfg.access_log.clone(),
        limits: cfg.limits,
        io,
        resolve_every: Duration::from_secs(30),
        calendar: cfg.calendar,
        data_dir: Some(cfg.data_dir),
        kafka,
        journal: cfg.journal,
    };
    serve(
        Serve {
            options,
            log,
            admin,
            ledger,
            keys: CONFIG_KEYS,
            reloader: Some(gateway_telemetry::Reloader::new(path, logging)),
        },
        |_| {},
    )
}

fn run_quickstart(io: IoMode, args: &QuickstartArgs) -> ExitCode {
    let _logging: LogHandle = gateway_telemetry::init(&LogSettings::default());
    let secret = quickstart::random_hex(16);
    let entities = quickstart::entities(&secret);
    let data_dir = args.dir();
    let log = match gateway::admin::open_quickstart(&data_dir, &entities) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = |port: Option<u16>, default: u16| {
        SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(default)))
    };
    let http = local(args.http_port, 8080);
    let token = quickstart::random_hex(16);
    let admin = gateway::admin::AdminOptions {
        addr: local(args.admin_port, 9000),
        token: gateway_model::entity::Secret::new(token.clone()),
        previous_secret_grace_ms: 3_600_000,
        rotation_every: Duration::from_secs(1),
        clock: gateway::admin::system_clock(),
        public_url: format!("http://{http}"),
        driver: String::new(),
        kafka: None,
        http: gateway_httpd::Limits::default(),
        metrics_public: false,
    };
    let options = NodeOptions {
        node_id: "quickstart".to_owned(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        pin: true,
        http: Some(http),
        https: None,
        access_log: None,
        limits: HttpLimits::default(),
        io,
        resolve_every: Duration::from_secs(30),
        calendar: gateway_core::window::Calendar::utc(),
        data_dir: Some(data_dir.clone()),
        kafka: None,
        journal: Default::default(),
    };
    let mut ledger = ledger::LedgerConfig::journal(&data_dir);
    ledger.addr = Some(local(args.ledger_port, 9100));
    serve(
        Serve {
            options,
            log,
            admin,
            ledger: Some(ledger),
            keys: QUICKSTART_FLAGS,
            reloader: None,
        },
        |bound| print_quickstart(bound, &secret, &token, &data_dir),
    )
}

/// The quickstart's banner, once every address is bound: curl lines that work as printed.
fn print_quickstart(bound: &Bound, secret: &str, token: &str, data_dir: &Path) {
    let http = bound.http;
    let admin = bound.admin;
    println!("Tollgate quickstart: a demo API on http://{http} (mock backend, no upstream needed)");
    println!();
    println!("  public route:  curl -i http://{http}/public");
    println!("  keyed route:   curl -i http://{http}/api \\");
    println!(
        "                      -H 'Otoroshi-Client-Id: demo-client' -H 'Otoroshi-Client-Secret: {secret}'"
    );
    println!("  without a key: curl -i http://{http}/api      (400 no_api_key)");
    println!();
    println!("Demo key: demo-client / {secret} (generated for this run). Ctrl-C stops the node.");
    println!("The demo key allows 100 calls/s, 1000 a day: watch Otoroshi-Daily-Calls-Remaining.");
    println!();
    println!("Admin API on http://{admin} (token generated for this run: {token}):");
    println!("  curl -s http://{admin}/api/apikeys -H 'Authorization: Bearer {token}'");
    println!("  curl -s http://{admin}/api/events -H 'Authorization: Bearer {token}'");
    println!("  curl -s http://{admin}/openapi.json");
    if let Some(ledger) = bound.ledger {
        println!();
        println!("Ledger (usage for billing) on http://{ledger}:");
        println!("  curl -s 'http://{ledger}/api/usage?apikey=demo-client&granularity=day'");
        println!("  curl -s 'http://{ledger}/api/totals?apikey=demo-client'");
    }
    println!();
    println!(
        "State (entity log, usage journal, ledger store) in {}; it is kept between runs.",
        data_dir.display()
    );
}

fn check(path: &Path) -> ExitCode {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            eprintln!("1 problem(s)");
            return ExitCode::FAILURE;
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let read = match config::read_text(&text) {
        Ok(read) => read,
        Err(problems) => {
            print_problems(path, &problems);
            eprintln!("{} problem(s)", problems.len());
            return ExitCode::FAILURE;
        }
    };
    let checked = config::parse(&text, base);
    // The ledger's own fields (`[ledger] grace_secs`, …) are part of the same file.
    let ledger_problems = ledger::LedgerConfig::from_file(&read.file, base)
        .err()
        .map(|problems| {
            let mut p = gateway_model::validate::Problems::default();
            for (field, message) in problems.0 {
                p.push(field, message);
            }
            p
        });
    let mut problems = match &checked {
        Ok(_) => gateway_model::validate::Problems::default(),
        Err(problems) => problems.clone(),
    };
    problems = config::merge(problems, &read, Some(config::preflight(&read.file, base)));
    problems = config::merge(problems, &read, ledger_problems);
    // The TLS files are read as the node would: a key that does not match its certificate, a
    // CA bundle without a certificate.
    if let (Ok(cfg), true) = (&checked, problems.is_empty()) {
        if let Some(Err(e)) = cfg.https.as_ref().map(config::TlsFiles::load) {
            problems.push(e.key, e.message);
        }
    }
    let cfg = match checked {
        Ok(cfg) if problems.is_empty() => cfg,
        _ => {
            print_problems(path, &problems);
            eprintln!("{} problem(s)", problems.len());
            return ExitCode::FAILURE;
        }
    };
    let (routes, keys, backends, apis) = cfg.seed.as_ref().map_or((0, 0, 0, 0), |(_, i)| {
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
