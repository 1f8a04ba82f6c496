#!/usr/bin/env python3
"""Parsing and statistics for benches/proxy/compare.sh (stdlib only).

Subcommands:
  record  --proxy P --round R --wrk FILE --clk-tck N --cpu0 "UT ST" --cpu1 "UT ST"
          Parses one wrk --latency output and the proxy's CPU ticks before/after the run, prints one
          JSON line (appended by compare.sh to runs.jsonl).
  hs-record --proxy P --mode new|reuse --round R --s-time FILE --seconds WALL --clk-tck N
          --cpu0 "UT ST" --cpu1 "UT ST"
          Parses one `openssl s_time` output and the proxy's CPU ticks before/after the run, prints
          one JSON line (appended by compare.sh to handshakes.jsonl).
  brief   < one record line (either kind): a one-line summary for the log
  report  --runs runs.jsonl --idle idle.jsonl [--handshakes handshakes.jsonl] --meta meta.json
          --out-dir DIR
          Medians and min-max per proxy, paired ratios to nginx (to nginx-tls for the TLS rows),
          idle-connection memory, handshakes; prints the tables and writes DIR/compare.json and
          DIR/compare.md.
"""

import argparse
import json
import re
import statistics
import sys

UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparsable latency {text!r}")
    return float(m.group(1)) * UNITS_US[m.group(2)]


def parse_wrk(text):
    out = {"requests": None, "seconds": None, "rps": None, "p50_us": None, "p99_us": None,
           "non_2xx": 0, "socket_errors": 0}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
        out["seconds"] = to_us(m.group(2) + m.group(3)) / 1e6
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(rf"^\s*{pct}(?:\.0+)?%\s+(\S+)", text, re.M)
        if m:
            out[key] = to_us(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    return out


def cmd_record(a):
    with open(a.wrk, encoding="utf-8", errors="replace") as f:
        w = parse_wrk(f.read())
    ut0, st0 = (int(x) for x in a.cpu0.split())
    ut1, st1 = (int(x) for x in a.cpu1.split())
    rec = {"proxy": a.proxy, "round": a.round, **w, "utime_ticks": ut1 - ut0,
           "stime_ticks": st1 - st0, "clk_tck": a.clk_tck}
    # /proc/stat and /proc/PID/stat both count in USER_HZ (= CLK_TCK) ticks.
    core_share(rec, a, ut1 - ut0, st1 - st0)
    n = w["requests"]
    if n:
        us = 1e6 / a.clk_tck / n
        rec["user_us_per_req"] = (ut1 - ut0) * us
        rec["sys_us_per_req"] = (st1 - st0) * us
        rec["total_us_per_req"] = (ut1 - ut0 + st1 - st0) * us
    else:
        rec["error"] = "wrk printed no request count"
    print(json.dumps(rec))


def core_share(rec, a, ut, st):
    """Adds the share of the proxy's core(s) used by anything but the proxy (noise) to rec."""
    if a.core0 and a.core1:
        b0, t0 = (int(x) for x in a.core0.split())
        b1, t1 = (int(x) for x in a.core1.split())
        if t1 > t0:
            rec["proxy_core_busy_pct"] = 100.0 * (b1 - b0) / (t1 - t0)
            rec["proxy_core_other_pct"] = max(0.0, 100.0 * (b1 - b0 - ut - st) / (t1 - t0))


def parse_s_time(text):
    """The figures of one `openssl s_time` run (OpenSSL 1.1 / 3.x output).

    s_time prints one character per connection ('r' when the session was resumed, '*' for a
    TLS 1.3 full handshake), then "N connections in Xs; Y connections/user sec, bytes read B"
    (X: the client's own user CPU time) and "N connections in S real seconds, B bytes read per
    connection". With -reuse, the first (untimed) connection is not in the count.
    """
    out = {"conns": None, "resumed": None, "full": None, "bytes_per_conn": None,
           "client_user_s": None}
    m = None
    for m in re.finditer(r"(\d+) connections in ([0-9.]+)s; [0-9.]+ connections/user sec, "
                         r"bytes read (\d+)", text):
        pass
    if m:
        out["conns"] = int(m.group(1))
        out["client_user_s"] = float(m.group(2))
        chars = re.findall(r"(?:^|\n)([*rt3]+)\n\n\d+ connections in [0-9.]+s;", text)
        if chars:
            out["resumed"] = chars[-1].count("r")
            out["full"] = len(chars[-1]) - out["resumed"]
        elif out["conns"] == 0:
            out["resumed"] = out["full"] = 0
    m = None
    for m in re.finditer(r"\d+ connections in \d+ real seconds, (\d+) bytes read per connection",
                         text):
        pass
    if m:
        out["bytes_per_conn"] = int(m.group(1))
    return out


def cmd_hs_record(a):
    with open(a.s_time, encoding="utf-8", errors="replace") as f:
        h = parse_s_time(f.read())
    ut0, st0 = (int(x) for x in a.cpu0.split())
    ut1, st1 = (int(x) for x in a.cpu1.split())
    ut, st = ut1 - ut0, st1 - st0
    rec = {"proxy": a.proxy, "mode": a.mode, "round": a.round, **h, "seconds": a.seconds,
           "utime_ticks": ut, "stime_ticks": st, "clk_tck": a.clk_tck}
    core_share(rec, a, ut, st)
    n = h["conns"]
    if n:
        us = 1e6 / a.clk_tck / n
        rec["conns_per_s"] = n / a.seconds if a.seconds > 0 else None
        rec["user_us_per_conn"] = ut * us
        rec["sys_us_per_conn"] = st * us
        rec["total_us_per_conn"] = (ut + st) * us
        # What one core of the proxy sustains at this CPU cost per connection.
        rec["conns_per_core_s"] = 1e6 / rec["total_us_per_conn"] if ut + st else None
        if h["resumed"] is not None and h["full"] is not None and h["resumed"] + h["full"]:
            rec["resumed_share"] = h["resumed"] / (h["resumed"] + h["full"])
    else:
        rec["error"] = "s_time printed no connection count"
    print(json.dumps(rec))


def cmd_brief(_a):
    r = json.loads(sys.stdin.readline())
    if "error" in r:
        print(r["error"])
        return
    if "mode" in r:
        print(f"{r['conns']} connections, {r['conns_per_s'] or 0:.0f}/s, user "
              f"{r['user_us_per_conn']:.0f} + sys {r['sys_us_per_conn']:.0f} = "
              f"{r['total_us_per_conn']:.0f} µs/conn (one core: {r['conns_per_core_s'] or 0:.0f}/s)"
              + (f", {100 * r['resumed_share']:.0f} % resumed"
                 if r.get("resumed_share") is not None else "")
              + (f", {r['bytes_per_conn']} bytes read/conn" if r.get("bytes_per_conn") else "")
              + (f", proxy core {r['proxy_core_other_pct']:.0f} % busy with other work"
                 if r.get("proxy_core_other_pct") is not None else ""))
        return
    print(f"{r['rps'] or 0:.0f} req/s, user {r['user_us_per_req']:.2f} + sys "
          f"{r['sys_us_per_req']:.2f} = {r['total_us_per_req']:.2f} µs/req, "
          f"p99 {fmt(r['p99_us'], 'lat')}"
          + (f", proxy core {r['proxy_core_other_pct']:.0f} % busy with other work"
             if r.get("proxy_core_other_pct") is not None else "")
          + (f", {r['non_2xx']} non-2xx" if r.get("non_2xx") else "")
          + (f", {r['socket_errors']} socket errors" if r.get("socket_errors") else ""))


def load_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return rows


METRICS = ["rps", "user_us_per_req", "sys_us_per_req", "total_us_per_req", "p50_us", "p99_us"]
HS_METRICS = ["conns_per_s", "user_us_per_conn", "sys_us_per_conn", "total_us_per_conn",
              "conns_per_core_s", "resumed_share", "bytes_per_conn"]


def summarize(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def paired_ratios(runs, base_runs, key, invert=False):
    """Ratio proxy/nginx per round (same round = neighbouring runs, similar noise); with invert,
    nginx/proxy (for a rate that a lower CPU cost raises)."""
    base = {(r["round"], r.get("mode")): r.get(key) for r in base_runs}
    out = []
    for r in runs:
        b = base.get((r["round"], r.get("mode")))
        if b and r.get(key):
            out.append(b / r[key] if invert else r[key] / b)
    return summarize(out)


def base_of(name):
    """The row a proxy is compared with: nginx-tls for the TLS rows, nginx for the others."""
    return "nginx-tls" if name.endswith("-tls") else "nginx"


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "rps":
        return f"{v / 1000:.1f}k"
    if kind == "lat":
        return f"{v / 1000:.2f}ms" if v >= 1000 else f"{v:.0f}µs"
    if kind == "ratio":
        return f"{v:.2f}×"
    if kind == "n0":
        return f"{v:.0f}"
    return f"{v:.2f}"


def cell(s, kind, ranges=True):
    if s is None:
        return "—"
    if not ranges or s["n"] < 2:
        return fmt(s["median"], kind)
    if kind == "rps":
        return f"{s['median'] / 1000:.1f}k ({s['min'] / 1000:.1f}–{s['max'] / 1000:.1f})"
    if kind == "lat":
        return f"{fmt(s['median'], kind)} ({fmt(s['min'], kind)}–{fmt(s['max'], kind)})"
    if kind == "ratio":
        return f"{s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f})"
    if kind == "n0":
        return f"{s['median']:.0f} ({s['min']:.0f}–{s['max']:.0f})"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


COLUMNS = [("req/s", "rps", "rps"), ("user µs/req", "user_us_per_req", "us"),
           ("sys µs/req", "sys_us_per_req", "us"), ("total µs/req", "total_us_per_req", "us"),
           ("p50", "p50_us", "lat"), ("p99", "p99_us", "lat")]


def cmd_report(a):
    runs = load_jsonl(a.runs)
    idle = {r["proxy"]: r for r in load_jsonl(a.idle)}
    hs = load_jsonl(a.handshakes) if a.handshakes else []
    with open(a.meta, encoding="utf-8") as f:
        meta = json.load(f)
    result = {"meta": meta, "proxies": []}
    for p in meta["proxies"]:
        name = p["name"]
        pr = [r for r in runs if r["proxy"] == name and "error" not in r]
        entry = {"name": name, "label": p.get("label", name), "available": p["available"],
                 "reason": p.get("reason"), "runs": [r for r in runs if r["proxy"] == name]}
        base = base_of(name)
        base_runs = [r for r in runs if r["proxy"] == base and "error" not in r]
        if p["available"] and pr:
            entry["summary"] = {m: summarize([r.get(m) for r in pr]) for m in METRICS}
            entry["ratio_base"] = base
            if base_runs and name != base:
                entry["ratio_total_to_nginx"] = paired_ratios(pr, base_runs, "total_us_per_req")
                entry["ratio_user_to_nginx"] = paired_ratios(pr, base_runs, "user_us_per_req")
            elif name == base:
                one = {"median": 1.0, "min": 1.0, "max": 1.0, "n": len(pr)}
                entry["ratio_total_to_nginx"] = one
                entry["ratio_user_to_nginx"] = one
            entry["errors"] = {"non_2xx": sum(r.get("non_2xx") or 0 for r in pr),
                               "socket_errors": sum(r.get("socket_errors") or 0 for r in pr)}
        elif p["available"]:
            entry["available"] = False
            entry["reason"] = "no valid run"
        entry["idle"] = idle.get(p.get("idle_key", name))
        hr = [r for r in hs if r["proxy"] == name and "error" not in r]
        if hr:
            base_hs = [r for r in hs if r["proxy"] == base and "error" not in r]
            entry["handshakes"] = {}
            for mode in ("new", "reuse"):
                mr = [r for r in hr if r["mode"] == mode]
                if not mr:
                    continue
                h = {m: summarize([r.get(m) for r in mr]) for m in HS_METRICS}
                if name != base and base_hs:
                    h["ratio_total_to_nginx"] = paired_ratios(mr, base_hs, "total_us_per_conn")
                    h["ratio_rate_per_core_to_nginx"] = paired_ratios(
                        mr, base_hs, "total_us_per_conn", invert=True)
                elif name == base:
                    one = {"median": 1.0, "min": 1.0, "max": 1.0, "n": len(mr)}
                    h["ratio_total_to_nginx"] = h["ratio_rate_per_core_to_nginx"] = one
                entry["handshakes"][mode] = h
        errs = [r for r in hs if r["proxy"] == name and "error" in r]
        if errs:
            entry["handshake_errors"] = len(errs)
        result["proxies"].append(entry)

    header = ["proxy"] + [c[0] for c in COLUMNS] + ["total/nginx", "user/nginx", "KiB/idle conn"]
    rows_txt, rows_md = [], []
    notes = []
    unavailable = []  # [[labels], reason]
    for e in result["proxies"]:
        if not e["available"]:
            reason = " ".join((e.get("reason") or "no reason given").split())
            rows_txt.append([e["label"], "not available"] + [""] * (len(header) - 2))
            rows_md.append([e["label"], "not available"] + ["—"] * (len(header) - 2))
            prev = next((n for n in unavailable if n[1] == reason), None)
            if prev:
                prev[0].append(e["label"])
            else:
                unavailable.append([[e["label"]], reason])
            continue
        s = e["summary"]
        idle_cell = "—"
        if e["idle"] and e["idle"].get("kib_per_conn") is not None:
            idle_cell = f"{e['idle']['kib_per_conn']:.2f}"
        row = ([e["label"]] + [cell(s[c[1]], c[2]) for c in COLUMNS]
               + [cell(e.get("ratio_total_to_nginx"), "ratio", e["name"] != base_of(e["name"])),
                  cell(e.get("ratio_user_to_nginx"), "ratio", e["name"] != base_of(e["name"])),
                  idle_cell])
        rows_txt.append(row)
        rows_md.append(row)
        if e["errors"]["non_2xx"] or e["errors"]["socket_errors"]:
            notes.append(f"{e['label']}: {e['errors']['non_2xx']} non-2xx responses, "
                         f"{e['errors']['socket_errors']} socket errors over its runs")
        if e["idle"] and e["idle"].get("note"):
            notes.append(f"{e['label']} idle: {e['idle']['note']}")

    notes = [f"{' and '.join(labels)}: not available: {reason}" for labels, reason in unavailable] + notes
    if any(e["available"] and e["name"].endswith("-tls") for e in result["proxies"]):
        notes.append("TLS rows (-tls) are compared with nginx-tls of the same round, not with "
                     "plain nginx")
    for e in result["proxies"]:
        if e.get("handshake_errors"):
            notes.append(f"{e['label']}: {e['handshake_errors']} s_time run(s) without a result")

    # Plain text table (stdout).
    widths = [max(len(str(r[i])) for r in rows_txt + [header]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(widths[i]) for i, h in enumerate(header)),
             "  ".join("-" * w for w in widths)]
    for r in rows_txt:
        lines.append("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)).rstrip())
    text = "\n".join(lines)

    hs_header = ["proxy", "handshake", "conns/s", "user µs/conn", "sys µs/conn", "total µs/conn",
                 "conns/s per core", "CPU/conn ÷ nginx-tls", "per-core rate ÷ nginx-tls",
                 "resumed"]
    hs_rows = []
    for e in result["proxies"]:
        for mode, h in (e.get("handshakes") or {}).items():
            resumed = h.get("resumed_share")
            hs_rows.append([
                e["label"], "full (-new)" if mode == "new" else "resumed (-reuse)",
                cell(h["conns_per_s"], "n0"), cell(h["user_us_per_conn"], "n0"),
                cell(h["sys_us_per_conn"], "n0"), cell(h["total_us_per_conn"], "n0"),
                cell(h["conns_per_core_s"], "n0"),
                cell(h.get("ratio_total_to_nginx"), "ratio", e["name"] != "nginx-tls"),
                cell(h.get("ratio_rate_per_core_to_nginx"), "ratio", e["name"] != "nginx-tls"),
                "—" if resumed is None else f"{100 * resumed['median']:.0f} %"])
    hs_text = ""
    if hs_rows:
        hw = [max(len(str(r[i])) for r in hs_rows + [hs_header]) for i in range(len(hs_header))]
        hs_lines = ["  ".join(str(h).ljust(hw[i]) for i, h in enumerate(hs_header)),
                    "  ".join("-" * w for w in hw)]
        for r in hs_rows:
            hs_lines.append("  ".join(str(v).ljust(hw[i]) for i, v in enumerate(r)).rstrip())
        hs_text = "\n".join(hs_lines)

    other = summarize([r.get("proxy_core_other_pct") for r in runs if "error" not in r])
    if other and other["max"] >= 5:
        notes.append(f"other processes used {other['median']:.0f} % (median; {other['min']:.0f}–"
                     f"{other['max']:.0f} %) of the proxy's core during the wrk runs: a noisy machine, "
                     f"compare the ratios of this run rather than absolute figures")
    hs_other = summarize([r.get("proxy_core_other_pct") for r in hs if "error" not in r])
    if hs_other and hs_other["max"] >= 5:
        notes.append(f"other processes used {hs_other['median']:.0f} % (median; "
                     f"{hs_other['min']:.0f}–{hs_other['max']:.0f} %) of the proxy's core during "
                     f"the s_time runs")
    m = meta
    if m.get("gateway_driver") and any(e["available"] and e["name"].startswith("gateway")
                                       for e in result["proxies"]):
        notes.append(f"gateway log: {m['gateway_driver']}")
    caption = (f"{m['runs']} runs of wrk -t{m['threads']} -c{m['conns']} -d{m['duration']}s per proxy, "
               f"closed loop, median (min–max); ratios are paired per round; "
               f"CPU pinning: proxy {m['cpus']['proxy']}, upstream {m['cpus']['upstream']}, "
               f"wrk {m['cpus']['wrk']}; {m['nproc']} cores, kernel {m['kernel']}, load average "
               f"{m.get('loadavg_start', '?')} at start; {m['date']}")
    md = [f"<!-- generated by benches/proxy/compare.sh on {m['date']} -->",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows_md]
    md += ["", caption + ".", "", f"Command: `{m.get('command', 'bash benches/proxy/compare.sh')}`"]
    idle_lines = []
    for e in result["proxies"]:
        i = e["idle"]
        if i and i.get("kib_per_conn") is not None and i.get("proxy") == e["name"]:
            idle_lines.append(f"{e['label']}: {i['conns_open']} idle connections, RSS "
                              f"{i['rss_before_kib']} → {i['rss_after_kib']} KiB")
    if idle_lines:
        md += ["", "Idle keep-alive memory: " + "; ".join(idle_lines) + "."]
    if notes:
        md += [""] + [f"- {n}" for n in notes]
    hs_caption = None
    if hs_rows:
        hm = m.get("handshakes") or {}
        hs_caption = (f"openssl s_time, sequential client, {hm.get('runs', '?')} runs of "
                      f"{hm.get('duration', '?')} s per proxy and mode, alternating; one HTTP/1.1 "
                      f"request with Connection: close per connection; CPU is the proxy's over the "
                      f"run per completed connection, conns/s per core = 10⁶ / total µs per "
                      f"connection; median (min–max), ratios paired per round")
        md += ["", "TLS handshakes (new connection per request):", "",
               "| " + " | ".join(hs_header) + " |", "|" + "---|" * len(hs_header)]
        md += ["| " + " | ".join(str(v) for v in r) + " |" for r in hs_rows]
        md += ["", hs_caption + "."]
    tls = (m.get("tls") or {}).get("proxies") or {}
    if tls:
        md += [""] + [f"- TLS {name}: {t.get('negotiated') or '?'}; s_time's request answered "
                      f"`{t.get('s_time_request_answer') or 'nothing'}`" for name, t in tls.items()]
    md_text = "\n".join(md) + "\n"

    with open(f"{a.out_dir}/compare.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(f"{a.out_dir}/compare.md", "w", encoding="utf-8") as f:
        f.write(md_text)
    print(text)
    print()
    print(caption)
    for n in notes:
        print("note: " + n)
    if hs_text:
        print()
        print(hs_text)
        print()
        print(hs_caption)
    for name, t in tls.items():
        print(f"TLS {name}: {t.get('negotiated') or '?'}; s_time's request answered "
              f"{t.get('s_time_request_answer') or 'nothing'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--proxy", required=True)
    r.add_argument("--round", type=int, required=True)
    r.add_argument("--wrk", required=True)
    r.add_argument("--clk-tck", type=int, required=True)
    r.add_argument("--cpu0", required=True)
    r.add_argument("--cpu1", required=True)
    r.add_argument("--core0", help="'busy total' ticks of the proxy's cores before the run")
    r.add_argument("--core1", help="'busy total' ticks of the proxy's cores after the run")
    h = sub.add_parser("hs-record")
    h.add_argument("--proxy", required=True)
    h.add_argument("--mode", choices=["new", "reuse"], required=True)
    h.add_argument("--round", type=int, required=True)
    h.add_argument("--s-time", required=True, help="the s_time output")
    h.add_argument("--seconds", type=float, required=True, help="wall time of the s_time run")
    h.add_argument("--clk-tck", type=int, required=True)
    h.add_argument("--cpu0", required=True)
    h.add_argument("--cpu1", required=True)
    h.add_argument("--core0")
    h.add_argument("--core1")
    p = sub.add_parser("report")
    p.add_argument("--runs", required=True)
    p.add_argument("--idle", required=True)
    p.add_argument("--handshakes", help="handshakes.jsonl (s_time runs), when any")
    p.add_argument("--meta", required=True)
    p.add_argument("--out-dir", required=True)
    sub.add_parser("brief", help="one line summary of a record read from stdin")
    a = ap.parse_args()
    {"record": cmd_record, "hs-record": cmd_hs_record, "report": cmd_report,
     "brief": cmd_brief}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
