//! The `loadtest` command line: parses flags and scenario files, runs the generator, prints the
//! progress and the summary, writes JSON/HTML reports, and turns failed expectations into a
//! non-zero exit status. All the work is in the library.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use loadtest::{
    IoMode, RunConfig,
    config::RunSpec,
    request::{RequestSpec, parse_header},
    run::{Event, ProgressSnapshot},
    scenario::Scenario,
};

/// Exit status when the run completed but an expectation failed.
const EXIT_EXPECTATION_FAILED: u8 = 3;

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "Tollgate's load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load an HTTP/1.1 server (plain http:// only) and report throughput and latency.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Io {
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Target URL, http://host[:port][/path] (overrides the scenario's).
    #[arg(long)]
    url: Option<String>,
    /// Connections in all (default 10).
    #[arg(short = 'c', long)]
    connections: Option<usize>,
    /// Measured duration after the warm-up, e.g. 10s, 1m (default 10s).
    #[arg(short = 'd', long, value_parser = loadtest::duration::parse)]
    duration: Option<Duration>,
    /// Open loop at this total rate (requests/s), latency from the intended send time.
    #[arg(short = 'R', long)]
    rate: Option<f64>,
    /// Stop after exactly this many measured requests (responses + errors).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Worker threads, one runtime each (default 1).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Extra request header, `Name: value` (repeatable; added to every request).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request method (default GET; not with a scenario's request mix).
    #[arg(long)]
    method: Option<String>,
    /// Request body (sent with Content-Length).
    #[arg(long)]
    body: Option<String>,
    /// Warm-up period whose requests are not recorded, e.g. 2s.
    #[arg(long, value_parser = loadtest::duration::parse)]
    warmup: Option<Duration>,
    /// Per-request timeout (connect + write + response), default 5s.
    #[arg(long, value_parser = loadtest::duration::parse)]
    timeout: Option<Duration>,
    /// IO driver.
    #[arg(long, value_enum, default_value = "auto")]
    io: Io,
    /// Scenario file (TOML): request mix, key pools, stages, expectations.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<String>,
    /// Write the HTML report here.
    #[arg(long)]
    html: Option<String>,
    /// No progress display.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// A written file's path as the user can open it: absolute.
fn shown(path: &str) -> String {
    std::path::absolute(path).map_or_else(|_| path.to_owned(), |p| p.display().to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let mut spec = RunSpec::default();
    let mut expectations = Vec::new();
    let mut mix_from_scenario = false;
    if let Some(path) = &args.scenario {
        let scenario = Scenario::load(path)?;
        expectations = scenario
            .expectations()
            .map_err(|m| anyhow::anyhow!("scenario {}: {m}", path.display()))?;
        mix_from_scenario = !scenario.requests.is_empty();
        scenario
            .apply(&mut spec)
            .with_context(|| format!("scenario {}", path.display()))?;
    }
    if let Some(url) = args.url {
        spec.url = url;
    }
    if spec.url.is_empty() {
        bail!("no target: give --url or a scenario with `url`");
    }
    if let Some(c) = args.connections {
        spec.connections = c;
    }
    if let Some(t) = args.threads {
        spec.threads = t;
    }
    if let Some(n) = args.requests {
        spec.budget = Some(n);
        // A budget alone runs until it is spent.
        if args.duration.is_none() {
            spec.duration = None;
        }
    }
    if let Some(r) = args.rate {
        spec.rate = Some(r);
        spec.stages.clear();
    }
    if let Some(d) = args.duration {
        if !spec.stages.is_empty() {
            // A staged run lasts as long as its stages: -d would be silently ignored.
            let planned: Duration = spec.stages.iter().map(|s| s.length()).sum();
            bail!(
                "-d/--duration does not apply to a scenario with [[stages]]: its stages last {} s \
                 in all; drop -d (and shorten the stages in the file), or add -R RATE to replace \
                 the stages by one steady rate for -d",
                planned.as_secs_f64()
            );
        }
        spec.duration = Some(d);
    }
    if let Some(w) = args.warmup {
        spec.warmup = w;
    }
    if let Some(t) = args.timeout {
        spec.timeout = t;
    }
    spec.io = match args.io {
        Io::Auto => IoMode::Auto,
        Io::Uring => IoMode::Uring,
        Io::Epoll => IoMode::Epoll,
    };
    if mix_from_scenario && (args.method.is_some() || args.body.is_some()) {
        bail!("--method and --body do not apply to a scenario's request mix");
    }
    if args.method.is_some() || args.body.is_some() {
        let mut one = RequestSpec::get();
        if let Some(m) = args.method {
            one.method = m;
        }
        one.body = args.body.unwrap_or_default().into_bytes();
        spec.requests = vec![one];
    }
    for h in &args.headers {
        let header = parse_header(h)?;
        for r in &mut spec.requests {
            r.headers.push(header.clone());
        }
    }
    let cfg = RunConfig::try_from(spec)?;

    let mode = if args.quiet {
        Display::Quiet
    } else if std::io::stdout().is_terminal() {
        Display::Bar
    } else {
        Display::Lines
    };
    let mut progress = Progress::new(mode);
    println!(
        "loadtest {} — {}, {} thread(s), {} connection(s){}",
        cfg.target.url,
        if cfg.is_open() {
            "open loop"
        } else {
            "closed loop"
        },
        cfg.threads,
        cfg.connections,
        if cfg.warmup.is_zero() {
            String::new()
        } else {
            format!(", warm-up {:?}", cfg.warmup)
        }
    );
    let report = loadtest::run(&cfg, |event| match event {
        Event::Progress(p) => progress.show(p),
        Event::Warning(w) => {
            progress.clear();
            eprintln!("warning: {w}");
        }
    })?;
    progress.clear();
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("  json report  {}", shown(path));
    }
    if let Some(path) = &args.html {
        loadtest::html::write(&report, &loadtest::html::Made::now(), path)?;
        println!("  html report  {}", shown(path));
    }
    let mut failed = 0;
    for e in &expectations {
        let (actual, ok) = e.check(&report);
        println!(
            "  expect       {e}: {actual:.4} {}",
            if ok { "ok" } else { "FAILED" }
        );
        failed += usize::from(!ok);
    }
    if failed > 0 {
        eprintln!("loadtest: {failed} expectation(s) not met");
        return Ok(ExitCode::from(EXIT_EXPECTATION_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Display {
    Quiet,
    /// One line rewritten in place (stdout is a terminal).
    Bar,
    /// A plain line every second (stdout is a pipe or a file).
    Lines,
}

#[derive(Debug)]
struct Progress {
    mode: Display,
    last: Option<(Duration, u64)>,
    drawn: bool,
}

impl Progress {
    fn new(mode: Display) -> Self {
        Self {
            mode,
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, p: &ProgressSnapshot) {
        let (last_t, last_n) = self.last.unwrap_or_default();
        let dt = p.elapsed.saturating_sub(last_t);
        let period = match self.mode {
            Display::Quiet => return,
            Display::Bar => Duration::from_millis(250),
            Display::Lines => Duration::from_secs(1),
        };
        if dt < period {
            return;
        }
        #[allow(clippy::cast_precision_loss)]
        let rps = p.completed.saturating_sub(last_n) as f64 / dt.as_secs_f64().max(1e-9);
        self.last = Some((p.elapsed, p.completed));
        let phase = if p.warming_up { " warm-up" } else { "" };
        let elapsed = p.elapsed.as_secs_f64();
        match self.mode {
            Display::Bar => {
                let (bar, of) = match p.planned {
                    Some(total) if !total.is_zero() => {
                        let frac = (elapsed / total.as_secs_f64()).clamp(0.0, 1.0);
                        let filled = (frac * 30.0).round() as usize;
                        (
                            format!("[{}{}]", "=".repeat(filled), " ".repeat(30 - filled)),
                            format!("/{:.0}s", total.as_secs_f64()),
                        )
                    }
                    _ => (String::new(), String::new()),
                };
                let mut out = std::io::stdout().lock();
                let _ = write!(
                    out,
                    "\r\x1b[2K{bar} {elapsed:.1}s{of}{phase}  {rps:.0} req/s  {} errors",
                    p.errors
                );
                let _ = out.flush();
                self.drawn = true;
            }
            Display::Lines => {
                println!(
                    "  {elapsed:6.1}s{phase}  {rps:10.0} req/s  {} done  {} errors",
                    p.completed, p.errors
                );
            }
            Display::Quiet => {}
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.drawn = false;
        }
    }
}
