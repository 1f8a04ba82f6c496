//! The gateway binary with `[ledger] mode = "embedded"` (the default): the ledger folds the
//! node's usage journal in-process and answers on `[ledger] addr`, across a restart.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Binary, Client, binary_config, get_request};
use gateway::runtime::IoMode;
use serde_json::{Value, json};

fn entities() -> Value {
    json!({
        "routes": [{"id": "keyed", "frontend": {"domains": ["*"]},
                    "backend": {"mock": {"body": "ok"}},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": [{"clientId": "billed", "clientSecret": "billed-secret-1", "authorizedEntities": ["route_keyed"],
                     "dailyQuota": 30, "monthlyQuota": 1000, "throttlingQuota": 1000}]
    })
}

fn ledger_addr(gw: &Binary) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        let found = log
            .lines()
            .filter(|l| l.contains("ledger query API listening"))
            .find_map(|l| {
                let at = l.find("ledger_addr=")?;
                l[at + 12..].split_whitespace().next()?.parse().ok()
            });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no ledger address in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    let mut c = Client::connect(addr);
    c.send(&get_request("ledger", path, &[]));
    let r = c.response();
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// Waits until the day's usage of `billed` reads `(calls, rejected)`.
fn wait_usage(addr: SocketAddr, calls: u64, rejected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = get_json(addr, "/api/usage?apikey=billed&granularity=day");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let got = items.first().map(|i| {
            (
                i["calls"].as_u64().unwrap_or(0),
                i["rejected"].as_u64().unwrap_or(0),
            )
        });
        if got == Some((calls, rejected)) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "usage never reached {calls}/{rejected}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_embedded_ledger_counts_what_the_node_admitted() {
    let gw = Binary::start(&binary_config(""), &entities(), IoMode::Epoll);
    let ledger = ledger_addr(&gw);
    let mut c = gw.client();
    let statuses: Vec<u16> = (0..40)
        .map(|_| {
            c.send(&get_request(
                "x",
                "/",
                &[
                    "Otoroshi-Client-Id: billed",
                    "Otoroshi-Client-Secret: billed-secret-1",
                ],
            ));
            c.response().status
        })
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 10);
    let usage = wait_usage(ledger, 30, 10);
    assert_eq!(usage["apikey"], "billed");
    let totals = get_json(ledger, "/api/totals?apikey=billed");
    assert_eq!(totals["daily_calls"], 30, "{totals}");

    // A restart: the store is reopened and resumes; nothing counted twice.
    gw.sigterm();
    let Binary { mut child, dir, .. } = gw;
    assert!(
        child
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
    let gw = Binary::start_in(dir, IoMode::Epoll);
    let ledger = ledger_addr(&gw);
    wait_usage(ledger, 30, 10);
    // The restored quota still refuses.
    let mut c = gw.client();
    c.send(&get_request(
        "x",
        "/",
        &[
            "Otoroshi-Client-Id: billed",
            "Otoroshi-Client-Secret: billed-secret-1",
        ],
    ));
    assert_eq!(c.response().status, 429);
    wait_usage(ledger, 30, 11);
}
