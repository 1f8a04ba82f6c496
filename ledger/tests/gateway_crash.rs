//! Crash test with the real gateway: the `gateway` binary (2 cores, `[events] sink =
//! "embedded"`, `[ledger] mode = "remote"`, so it runs no ledger itself) serves keyed calls
//! from client threads that count their 200s, while a loop starts the `ledger` binary on the
//! same config and SIGKILLs it at random instants, restarting it each time. Then the load
//! stops, the gateway gets SIGTERM (it flushes all usage to its journal), a last ledger
//! catches up, and its `GET /api/totals` per key must equal the 200s the clients saw for that
//! key: nothing lost, nothing doubled. `ledger rebuild` must then give the live state hash.
//!
//! The `gateway` binary is taken from next to the `ledger` binary (same target dir and
//! profile); if it is missing the test builds it with `cargo build -p gateway`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, get_json, now_ms, temp_dir, today};
use gateway_events::journal::{JournalReader, Stream};

const KILLS: usize = 8;
const CLIENTS: usize = 4;
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const SECRET: &str = "s3cr3t-value";

/// xorshift, seeded from the clock: each run kills at different instants (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A child process that is SIGKILLed and reaped when dropped (a failing test leaks nothing).
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}: {status}", self.pid());
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `gateway` binary of the same target dir and profile; built if missing.
fn gateway_binary() -> PathBuf {
    let ledger = Path::new(env!("CARGO_BIN_EXE_ledger"));
    let gateway = ledger.with_file_name("gateway");
    if gateway.exists() {
        return gateway;
    }
    let release = ledger
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    eprintln!(
        "{} is missing: running `cargo build -p gateway{}` in {} (build it beforehand to \
         skip this)",
        gateway.display(),
        if release { " --release" } else { "" },
        workspace.display()
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "gateway", "--bin", "gateway"])
        .current_dir(workspace);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(
        status.success() && gateway.exists(),
        "`cargo build -p gateway` failed ({status}) or did not produce {}; the crash test \
         needs the real gateway binary next to the ledger binary",
        gateway.display()
    );
    gateway
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(ledger_port: u16) -> String {
    format!(
        "[node]\nid = \"gw-crash\"\ncores = 2\ndata_dir = \"data\"\n\n\
         [listeners.http]\naddr = \"127.0.0.1:0\"\n\n\
         [admin]\naddr = \"127.0.0.1:0\"\ntoken = \"crash-admin-token\"\n\n\
         [ledger]\nmode = \"remote\"\naddr = \"127.0.0.1:{ledger_port}\"\n\n\
         [seed]\nentities = \"entities.json\"\n\n\
         [events]\nsink = \"embedded\"\n"
    )
}

/// A keyed mock route and the API keys, with quotas the test never reaches.
fn entities_doc() -> serde_json::Value {
    serde_json::json!({
        "routes": [{"id": "keyed", "frontend": {"domains": ["*"]},
                    "backend": {"mock": {"body": "ok"}},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": KEYS.iter().map(|k| serde_json::json!({
            "clientId": k, "clientSecret": SECRET, "authorizedEntities": ["route_keyed"],
            "dailyQuota": 1_000_000_000u64, "monthlyQuota": 1_000_000_000u64,
            "throttlingQuota": 1_000_000_000u64
        })).collect::<Vec<_>>()
    })
}

/// Starts the gateway on `dir/tollgate.toml`; its address comes from the `serving` log line.
fn start_gateway(dir: &Path) -> (Guard, SocketAddr, Arc<Mutex<String>>) {
    let mut child = Command::new(gateway_binary())
        .arg("--config")
        .arg(dir.join("tollgate.toml"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
    }
    let mut guard = Guard(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let found = log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains("serving"))
            .find_map(|l| {
                let at = l.find("addr=")?;
                l[at + 5..]
                    .split_whitespace()
                    .next()?
                    .parse::<SocketAddr>()
                    .ok()
            });
        if let Some(addr) = found {
            break addr;
        }
        if let Some(status) = guard.wait_exit(Duration::ZERO) {
            panic!(
                "gateway exited ({status}) before serving:\n{}",
                log.lock().unwrap()
            );
        }
        assert!(
            Instant::now() < deadline,
            "gateway did not log its address within 30 s:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    (guard, addr, log)
}

fn start_ledger(dir: &Path, run: usize) -> Guard {
    let log = std::fs::File::create(dir.join(format!("ledger-{run}.log"))).unwrap();
    Guard(Some(
        Command::new(env!("CARGO_BIN_EXE_ledger"))
            .arg("--config")
            .arg(dir.join("tollgate.toml"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ))
}

/// One keep-alive connection sending keyed GETs; any I/O error or non-200 answer fails the
/// test (the gateway is never killed here, so every call must have a definite answer).
fn client(addr: SocketAddr, first: usize, stop: &AtomicBool) -> [u64; KEYS.len()] {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut ok = [0u64; KEYS.len()];
    let mut n = first;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = n % KEYS.len();
        write!(
            writer,
            "GET / HTTP/1.1\r\nHost: x\r\nOtoroshi-Client-Id: {}\r\n\
             Otoroshi-Client-Secret: {SECRET}\r\n\r\n",
            KEYS[key]
        )
        .unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(
            status,
            200,
            "unexpected answer for {}: {}",
            KEYS[key],
            String::from_utf8_lossy(&body)
        );
        ok[key] += 1;
    }
    ok
}

/// The usage journal's records: (count, next offset, admitted calls per key).
fn journal(data: &Path) -> (u64, u64, BTreeMap<String, u64>) {
    let mut reader = JournalReader::open(Stream::Usage.dir(&data.join("journal")), 0).unwrap();
    let (mut count, mut next) = (0, 0);
    let mut admitted: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(record) = reader.next_record().unwrap() {
        count += 1;
        next = record.offset + 1;
        let batch = gateway_model::event::decode(record.payload).unwrap();
        for e in &batch.entries {
            *admitted.entry(e.apikey.clone()).or_default() += e.counters.admitted;
        }
    }
    (count, next, admitted)
}

#[test]
fn ledger_killed_at_random_while_the_real_gateway_serves_counts_every_200_once() {
    let dir = temp_dir("gateway-crash");
    let ledger_port = free_port();
    let ledger_addr: SocketAddr = ([127, 0, 0, 1], ledger_port).into();
    std::fs::write(dir.join("tollgate.toml"), config(ledger_port)).unwrap();
    std::fs::write(
        dir.join("entities.json"),
        serde_json::to_vec_pretty(&entities_doc()).unwrap(),
    )
    .unwrap();
    let data = dir.join("data");
    let seed = now_ms() as u64 | 1;
    eprintln!("gateway crash test seed {seed}, dir {}", dir.display());
    let mut rng = Rng(seed);
    let (day_before, started) = (today(), Instant::now());

    let (mut gateway, addr, gateway_log) = start_gateway(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || client(addr, t, &stop))
        })
        .collect();

    let mut kills = Vec::new();
    for kill in 0..KILLS {
        let mut ledger = start_ledger(&dir, kill);
        let alive = Duration::from_millis(150 + rng.next() % 851);
        std::thread::sleep(alive);
        assert!(
            ledger.child().try_wait().unwrap().is_none(),
            "the ledger exited by itself before kill {kill}: {}",
            std::fs::read_to_string(dir.join(format!("ledger-{kill}.log"))).unwrap_or_default()
        );
        drop(ledger); // SIGKILL, reaped
        kills.push(alive.as_millis());
    }
    eprintln!(
        "ledger SIGKILLed {KILLS} times after {kills:?} ms ({:?} since start)",
        started.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    let mut ok = [0u64; KEYS.len()];
    for c in clients {
        for (total, n) in ok.iter_mut().zip(c.join().unwrap()) {
            *total += n;
        }
    }
    gateway.sigterm();
    let status = gateway
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway exits within 30 s of SIGTERM");
    assert!(
        status.success(),
        "gateway: {status}\n{}",
        gateway_log.lock().unwrap()
    );
    let elapsed = started.elapsed();
    // The killed runs made progress (commits happened between kills).
    let folded_before_last_run = {
        let config = ledger::LedgerConfig::load(&dir.join("tollgate.toml")).unwrap();
        let opening = Instant::now();
        let store = ledger::Store::open(&config.store_path).unwrap();
        eprintln!(
            "store ({} bytes) opened after the kills in {:?}",
            std::fs::metadata(&config.store_path).map_or(0, |m| m.len()),
            opening.elapsed()
        );
        store
            .positions()
            .unwrap()
            .get("journal:usage")
            .map_or(0, |p| p.next)
    };

    let answered: u64 = ok.iter().sum();
    let (records, next, journaled) = journal(&data);
    eprintln!(
        "{answered} calls answered 200 in {elapsed:?}; the journal holds {records} batches; \
         the killed runs folded {folded_before_last_run} of them"
    );
    assert!(answered > 1000, "the load ran: {answered} calls");
    assert!(
        folded_before_last_run > 0,
        "the killed ledgers folded nothing"
    );
    for (k, key) in KEYS.iter().enumerate() {
        assert_eq!(
            journaled.get(*key).copied().unwrap_or(0),
            ok[k],
            "the gateway's journal does not hold the 200s of {key} (a gateway fault, not the \
             ledger's)"
        );
    }

    // A last run catches up; its totals must be exact.
    let mut ledger = start_ledger(&dir, KILLS);
    let caught_up = eventually(Duration::from_secs(120), || {
        TcpStream::connect(ledger_addr).is_ok() && {
            let (code, state) = get_json(ledger_addr, "/api/state");
            code == 200 && state["positions"]["journal:usage"]["next"] == next
        }
    });
    assert!(
        caught_up,
        "the last ledger never reached journal offset {next}: {}",
        std::fs::read_to_string(dir.join(format!("ledger-{KILLS}.log"))).unwrap_or_default()
    );
    // A run that straddles midnight (UTC) spreads its calls over two days: compare months.
    let same_day = today() == day_before;
    let field = if same_day {
        "daily_calls"
    } else {
        "monthly_calls"
    };
    let mut counted = 0;
    for (k, key) in KEYS.iter().enumerate() {
        let (code, totals) = get_json(ledger_addr, &format!("/api/totals?apikey={key}"));
        assert_eq!(code, 200, "{totals}");
        let calls = totals[field].as_u64().unwrap();
        assert_eq!(calls, ok[k], "{field} of {key}: {totals}");
        assert_eq!(totals["nodes"]["gw-crash"][field], ok[k], "{totals}");
        counted += calls;
    }
    assert_eq!(counted, answered, "ledger totals vs the clients' 200s");
    let (_, state) = get_json(ledger_addr, "/api/state");
    let counters = &state["counters"];
    eprintln!("ledger counters after the last run: {counters}");
    assert_eq!(counters["gaps"], 0, "{counters}");
    assert_eq!(counters["quarantined"], 0, "{counters}");
    assert_eq!(counters["offset_gone"], 0, "{counters}");
    let live = state["state_hash"].as_str().unwrap().to_owned();

    // Rebuild from the log (the store is locked while a ledger runs: stop it first).
    ledger.sigterm();
    ledger
        .wait_exit(Duration::from_secs(30))
        .expect("the ledger exits on SIGTERM");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .arg("--config")
        .arg(dir.join("tollgate.toml"))
        .arg("rebuild")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["state_hash"], live.as_str(), "{report}");
    assert_eq!(report["live_state_hash"], live.as_str(), "{report}");
    assert_eq!(report["identical"], true, "{report}");
    std::fs::remove_dir_all(&dir).ok();
}
