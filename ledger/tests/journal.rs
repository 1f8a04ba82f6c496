//! End to end over the embedded journal: the real journal writer, the ledger tailing it, the
//! query API over loopback, restart, quarantine and rebuild.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use gateway_events::journal::{Journal, JournalOptions, Stream};
use gateway_model::event::encode;
use ledger::{Ledger, LedgerConfig};

fn config(data: &std::path::Path) -> LedgerConfig {
    let mut config = LedgerConfig::journal(data);
    config.addr = Some("127.0.0.1:0".parse().unwrap());
    config
}

fn usage_journal(data: &std::path::Path) -> Journal {
    Journal::open(
        Stream::Usage.dir(&data.join("journal")),
        JournalOptions::default(),
    )
    .unwrap()
    .0
}

fn caught_up(addr: SocketAddr, usage: u64, entities: u64) -> bool {
    let (_, state) = get_json(addr, "/api/state");
    state["positions"]["journal:usage"]["next"] == usage
        && (entities == 0 || state["positions"]["journal:entities"]["next"] == entities)
}

#[test]
fn journal_to_http_end_to_end_with_restart_quarantine_and_rebuild() {
    let data = temp_dir("journal-e2e");
    let mut usage = usage_journal(&data);
    let (mut entities, _) = Journal::open(
        Stream::Entities.dir(&data.join("journal")),
        JournalOptions::default(),
    )
    .unwrap();
    let k0 = key_in(0, 1, 0);
    let k1 = key_in(0, 1, 1);
    // 2 cores × 10 batches: k0 gets 3 admitted + 1 rejected per batch, k1 5 admitted.
    for seq in 0..10 {
        for core in 0..2 {
            let b = batch(
                "gw-a",
                core,
                0,
                1,
                seq,
                vec![entry(&k0, 3, 1), entry(&k1, 5, 0)],
            );
            usage.append(&encode(&b).unwrap()).unwrap();
        }
    }
    // A replay of a batch already appended (a retry after a crash): must count once.
    let replay = batch("gw-a", 0, 0, 1, 4, vec![entry(&k0, 3, 1), entry(&k1, 5, 0)]);
    usage.append(&encode(&replay).unwrap()).unwrap();
    // A record whose frame is fine but whose bytes are not a batch: quarantined.
    usage.append(b"\x01\x04\x00\x00\x00oops").unwrap();
    usage.sync().unwrap();
    for (version, secret) in [(1, "sealed:v1"), (2, "sealed:v2")] {
        entities
            .append(&entity_event(version, secret).encode().unwrap())
            .unwrap();
    }
    // A certificate: its history must hide the (sealed) private key too.
    let mut cert = entity_event(1, "unused");
    cert.kind = gateway_model::event::EntityKind::Certificate;
    cert.entity_id = "cert-0".into();
    cert.entity = serde_json::json!({"id": "cert-0", "chain": "-----BEGIN CERTIFICATE-----",
        "privateKey": "sealed:v1:cert-key", "subject": "CN=api.example.com"});
    entities.append(&cert.encode().unwrap()).unwrap();
    entities.sync().unwrap();

    let ledger = Ledger::start(config(&data)).unwrap();
    let addr = ledger.local_addr().unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(
        addr, 22, 3
    )));

    let day = today();
    let period = format!("{}-{:02}-{:02}", day / 10000, day / 100 % 100, day % 100);
    let (status, body) = get_json(addr, &format!("/api/usage?apikey={k0}&granularity=day"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["apikey"], k0.as_str());
    assert_eq!(body["timezone"], "UTC");
    assert_eq!(body["granularity"], "day");
    let item = &body["items"][0];
    assert_eq!(item["period"], period.as_str());
    assert_eq!(item["calls"], 60);
    assert_eq!(item["rejected"], 20);
    assert_eq!(item["rejected_by_reason"]["quota_daily"], 20);
    assert_eq!(item["bytes_in"], 6000);
    assert_eq!(item["bytes_out"], 60000);
    assert_eq!(item["adjustments"]["calls"], 0);

    let (_, body) = get_json(addr, "/api/usage?consumer=acme&granularity=month");
    assert_eq!(body["items"][0]["calls"], 160);
    assert_eq!(body["items"][0]["period"], &period[..7]);
    let (_, body) = get_json(
        addr,
        &format!("/api/usage?api=api-pets&from={period}&to={period}"),
    );
    assert_eq!(body["items"][0]["calls"], 160);
    let (_, body) = get_json(
        addr,
        "/api/usage?subscription=sub-gold&from=2000-01-01&to=2000-01-02",
    );
    assert_eq!(body["items"], serde_json::json!([]));

    let (_, totals) = get_json(addr, &format!("/api/totals?apikey={k1}"));
    assert_eq!(totals["daily_calls"], 100);
    assert_eq!(totals["monthly_calls"], 100);
    assert_eq!(totals["nodes"]["gw-a"]["daily_calls"], 100);
    let record = ledger.handle().totals(&k1).unwrap();
    assert_eq!((record.daily_calls, record.day), (100, day));
    let update = ledger.handle().totals_since(0).unwrap();
    assert_eq!(update.records.len(), 2);
    assert!(
        ledger
            .handle()
            .totals_since(update.version)
            .unwrap()
            .records
            .is_empty()
    );

    let (status, csv) = get(
        addr,
        &format!("/api/export?period={}&format=csv", &period[..7]),
    );
    assert_eq!(status, 200);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("period,timezone,apikey,calls,rejected"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{},UTC,{k0},60,20,", &period[..7])))
    );
    let (_, json_lines) = get(addr, &format!("/api/export?period={period}&format=json"));
    let first: serde_json::Value =
        serde_json::from_str(json_lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["period"], period.as_str());

    let (status, history) = get_json(addr, "/api/entities/apikey/key-0/history");
    assert_eq!(status, 200);
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["version"], 2);
    assert_eq!(items[1]["actor"], "admin");
    assert_eq!(items[1]["action"], "updated");
    assert_eq!(items[1]["entity"]["clientSecret"], "***");
    assert_eq!(items[1]["entity"]["dailyQuota"], 2000);
    assert!(!history.to_string().contains("sealed:"));
    let (status, history) = get_json(addr, "/api/entities/certificate/cert-0/history");
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["items"][0]["entity"]["privateKey"], "***");
    assert_eq!(
        history["items"][0]["entity"]["subject"],
        "CN=api.example.com"
    );
    assert!(!history.to_string().contains("sealed:"));

    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "tollgate_ledger_batches_applied_total 20",
        "tollgate_ledger_batches_duplicate_total 1",
        "tollgate_ledger_quarantined_total 1",
        "tollgate_ledger_sequence_gaps_total 0",
        "tollgate_ledger_lag_records{source=\"journal:usage\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let (status, health) = get_json(addr, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["consumer_lag"]["journal:usage"]["lag_records"], 0);
    let (_, quarantine) = get_json(addr, "/api/quarantine");
    assert_eq!(quarantine["items"][0]["offset"], 21);

    // Bad requests.
    for path in [
        "/api/usage",
        "/api/usage?apikey=a&consumer=b",
        "/api/usage?apikey=a&granularity=week",
        "/api/usage?apikey=a&from=2026-13-01",
        "/api/usage?apikey=a&from=2026-11-02&to=2026-11-01",
        "/api/usage?apikey=a&colour=red",
        "/api/export?period=11-2026",
        "/api/export?period=2026-11&format=xml",
        "/api/entities/planet/x/history",
        "/api/totals",
    ] {
        let (status, body) = get_json(addr, path);
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(body["error_description"].is_string());
    }
    assert_eq!(get(addr, "/nope").0, 404);
    assert_eq!(get(addr, "/api/entities/apikey/unknown/history").0, 404);

    // Restart: more batches, including a gap (sequence 12 after 10 on core 0).
    let live_hash = ledger.handle().state_hash().unwrap();
    ledger.shutdown();
    for (core, seq) in [(0, 10), (0, 12), (1, 10)] {
        let b = batch("gw-a", core, 0, 1, seq, vec![entry(&k0, 1, 0)]);
        usage.append(&encode(&b).unwrap()).unwrap();
    }
    usage.sync().unwrap();
    let ledger = Ledger::start(config(&data)).unwrap();
    let addr = ledger.local_addr().unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(
        addr, 25, 3
    )));
    assert_ne!(ledger.handle().state_hash().unwrap(), live_hash);
    let (_, totals) = get_json(addr, &format!("/api/totals?apikey={k0}"));
    assert_eq!(totals["daily_calls"], 63);
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains("tollgate_ledger_sequence_gaps_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_ledger_sequences_missing 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_ledger_batches_applied_total 23"),
        "{metrics}"
    );

    // Rebuild from the log: the same state, byte for byte.
    let live_hash = ledger.handle().state_hash().unwrap();
    ledger.shutdown();
    let report = ledger::rebuild::rebuild(&config(&data), &data.join("rebuilt.redb")).unwrap();
    assert_eq!(report["state_hash"], live_hash.as_str(), "{report}");
    assert_eq!(report["identical"], true, "{report}");

    // `ledger dump` and `ledger dump --raw`.
    let store = ledger::Store::open(&data.join("ledger").join("ledger.redb")).unwrap();
    let mut dump = Vec::new();
    store.dump(&mut dump).unwrap();
    let dump = String::from_utf8(dump).unwrap();
    let lines: Vec<serde_json::Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "aggregate" && l["dimension"] == "route")
    );
    assert!(lines.iter().any(|l| l["type"] == "quarantined"));
    assert_eq!(lines.last().unwrap()["state_hash"], live_hash.as_str());
    drop(store);
    let mut raw = Vec::new();
    ledger::rebuild::dump_raw(&config(&data), &mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert_eq!(raw.lines().count(), 25 + 3);
    assert!(raw.lines().next().unwrap().contains("\"usage\""));
    assert!(raw.contains("\"error\""));
    std::fs::remove_dir_all(&data).ok();
}

#[test]
fn a_record_damaged_on_disk_is_quarantined_and_the_rest_applied() {
    let data = temp_dir("journal-crc");
    let k0 = key_in(0, 1, 0);
    let mut lens = Vec::new();
    {
        let mut usage = usage_journal(&data);
        for seq in 0..3 {
            let bytes = encode(&batch("gw-a", 0, 0, 1, seq, vec![entry(&k0, 10, 0)])).unwrap();
            lens.push(bytes.len());
            usage.append(&bytes).unwrap();
        }
        usage.sync().unwrap();
    }
    // Flip a payload byte of the second record: its CRC no longer matches, valid frames follow.
    let segment = Stream::Usage
        .dir(&data.join("journal"))
        .join("00000000000000000000.seg");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = 8 + lens[0] + 8 + lens[1] / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();

    let mut config = LedgerConfig::journal(&data);
    config.addr = None;
    let ledger = Ledger::start(config).unwrap();
    let handle = ledger.handle();
    assert!(eventually(Duration::from_secs(20), || {
        handle
            .store()
            .positions()
            .unwrap()
            .get("journal:usage")
            .is_some_and(|p| p.next == 3)
    }));
    let stats = handle.stats();
    assert_eq!(
        (stats.batches, stats.corrupt_skipped, stats.quarantined),
        (2, 1, 1)
    );
    // Sequence 1 never arrived: a gap, reported.
    assert_eq!(stats.gaps, 1);
    assert_eq!(handle.totals(&k0).unwrap().daily_calls, 20);
    let quarantined = handle.store().quarantine().unwrap();
    assert_eq!(quarantined[0]["offset"], 1);
    assert_eq!(quarantined[0]["kind"], "checksum");
    drop(handle);
    ledger.shutdown();
    std::fs::remove_dir_all(&data).ok();
}
