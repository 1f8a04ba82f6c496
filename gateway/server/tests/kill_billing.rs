//! Zero unbilled calls: the real binary (embedded journal and ledger, two cores) under keyed load
//! from many connections, SIGKILLed at random instants and restarted, again and again. At the
//! end, per API key, the ledger holds every call a client saw answered 2xx (none lost), at most
//! the calls whose answer the kill cut off on top (a call admitted and counted whose response
//! never arrived; no process can tell those apart), and never more than the key's quota.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Binary, Client, binary_config, get_request};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

const KEYS: usize = 4;
/// Key 0's daily quota: it runs out a few seconds in, several kills after the start.
const SMALL_QUOTA: u64 = 30_000;
const KILLS: usize = 22;
const CLIENTS: usize = 16;

fn key(i: usize) -> String {
    format!("kill-key-{i}")
}

fn entities() -> Value {
    let keys: Vec<Value> = (0..KEYS)
        .map(|i| {
            json!({"clientId": key(i), "clientSecret": format!("secret-{i}-xxxxxxxx"),
                   "authorizedEntities": ["route_keyed"],
                   "dailyQuota": if i == 0 { SMALL_QUOTA } else { 100_000_000 },
                   "monthlyQuota": 1_000_000_000u64, "throttlingQuota": 10_000_000})
        })
        .collect();
    json!({
        "routes": [{"id": "keyed", "frontend": {"domains": ["*"]},
                    "backend": {"mock": {"body": "ok"}},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": keys
    })
}

/// What the clients saw, per key.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ok: u64,
    refused: u64,
    /// Sent whole, no whole answer (the kill cut it): billed or not, nobody can know.
    cut: u64,
}

fn ledger_addr(gw: &Binary) -> SocketAddr {
    gw.logged_addr("ledger_addr=")
}

fn daily_calls(ledger: SocketAddr, key: &str) -> Option<u64> {
    let mut c = Client::try_connect(ledger).ok()?;
    c.try_send(&get_request(
        "ledger",
        &format!("/api/totals?apikey={key}"),
        &[],
    ))
    .ok()?;
    let r = c.try_response().ok()?;
    (r.status == 200).then(|| r.json()["daily_calls"].as_u64().unwrap_or(0))
}

/// One client thread: keep-alive requests on key `k`, reconnecting to wherever the gateway is.
fn client(
    k: usize,
    addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<usize, Seen>>>,
) {
    let request = get_request(
        "x",
        "/",
        &[
            &format!("Otoroshi-Client-Id: {}", key(k)),
            &format!("Otoroshi-Client-Secret: secret-{k}-xxxxxxxx"),
        ],
    );
    let mut mine = Seen::default();
    let mut conn: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let at = *addr.lock().unwrap();
                match Client::try_connect(at) {
                    Ok(c) => conn.insert(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                }
            }
        };
        if c.try_send(&request).is_err() {
            // Not sent whole: the gateway cannot have answered it.
            conn = None;
            continue;
        }
        match c.try_response() {
            Ok(r) if (200..300).contains(&r.status) => mine.ok += 1,
            Ok(r) if r.status == 429 => mine.refused += 1,
            Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text()),
            Err(_) => {
                mine.cut += 1;
                conn = None;
            }
        }
    }
    let mut all = seen.lock().unwrap();
    let s = all.entry(k).or_default();
    s.ok += mine.ok;
    s.refused += mine.refused;
    s.cut += mine.cut;
}

#[test]
fn every_call_answered_2xx_is_billed_exactly_once_across_kill_9s() {
    let started = Instant::now();
    let config = binary_config("").replace("cores = 1", "cores = 2");
    let mut gw = Binary::start(&config, &entities(), IoMode::Auto);
    let addr = Arc::new(Mutex::new(gw.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, stop, seen) = (addr.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || client(i % KEYS, addr, stop, seen))
        })
        .collect();
    let mut rng = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            % 1_000_000_007,
    )
    .unwrap();
    eprintln!("kill_billing: seed {rng}");
    let mut next = move || {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        rng >> 33
    };
    for round in 0..KILLS {
        // A random instant 50–650 ms into this run's load.
        std::thread::sleep(Duration::from_millis(50 + next() % 600));
        let pid = gw.pid();
        let Binary { mut child, dir, .. } = gw;
        child.0.as_mut().unwrap().kill().unwrap(); // SIGKILL
        assert!(
            child.wait_exit(Duration::from_secs(10)).is_some(),
            "pid {pid} did not die"
        );
        drop(child);
        gw = Binary::start_in(dir, IoMode::Auto);
        *addr.lock().unwrap() = gw.addr;
        if round == 0 {
            assert!(
                gw.log()
                    .contains("usage tallies of previous runs recovered"),
                "no recovery logged:\n{}",
                gw.log()
            );
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let ledger = ledger_addr(&gw);
    // The ledger folds within a second; wait until every key's total stops moving.
    let mut totals = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: BTreeMap<usize, Option<u64>> = (0..KEYS)
            .map(|k| (k, daily_calls(ledger, &key(k))))
            .collect();
        let settled = (0..KEYS).all(|k| {
            let s = seen.get(&k).copied().unwrap_or_default();
            now.get(&k)
                .copied()
                .flatten()
                .is_some_and(|n| n >= s.ok && n <= s.ok + s.cut)
        });
        if (settled && now == totals) || Instant::now() > deadline {
            totals = now;
            break;
        }
        totals = now;
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut cut_billed = 0;
    for k in 0..KEYS {
        let s = seen.get(&k).copied().unwrap_or_default();
        let billed = totals.get(&k).copied().flatten().unwrap_or(0);
        eprintln!(
            "kill_billing: {}: 2xx {} 429 {} cut {} ledger {}",
            key(k),
            s.ok,
            s.refused,
            s.cut,
            billed
        );
        assert!(s.ok > 0, "{}: no call went through", key(k));
        assert!(
            billed >= s.ok,
            "{}: {} calls answered 2xx, {} billed: {} lost",
            key(k),
            s.ok,
            billed,
            s.ok - billed
        );
        assert!(
            billed <= s.ok + s.cut,
            "{}: {} billed, but only {} answered 2xx and {} cut off",
            key(k),
            billed,
            s.ok,
            s.cut
        );
        cut_billed += billed - s.ok;
    }
    let small = seen.get(&0).copied().unwrap_or_default();
    let small_billed = totals.get(&0).copied().flatten().unwrap_or(0);
    assert!(
        small.refused > 0,
        "key 0 never ran out of quota: the test proves nothing about restores"
    );
    assert!(
        small_billed <= SMALL_QUOTA && small.ok <= SMALL_QUOTA,
        "key 0 admitted past its quota across restarts: {small_billed} billed, {} answered, \
         quota {SMALL_QUOTA}",
        small.ok
    );
    eprintln!(
        "kill_billing: {KILLS} kills in {:.1} s; calls cut off by a kill and billed: {cut_billed}",
        started.elapsed().as_secs_f64()
    );
}
