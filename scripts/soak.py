#!/usr/bin/env python3
"""Fault-injection soak: two gateway nodes on Kafka (tansu), a remote ledger, an upstream, mixed
keyed traffic, and at random instants kill -9 + restart of a gateway node, the ledger or the
broker, and upstream stalls. At the end it checks and prints one JSON document:

  per key   ledger admitted vs the clients' 2xx: lost = 2xx the ledger lacks (must be 0);
            extra = ledger calls beyond the 2xx, allowed only up to the requests whose answer
            the client never got (cut by a kill: admitted and billed, but unseen);
  per node  admitted <= the key's daily quota (the ledger's per-node totals);
  cluster   all nodes together: overshoot beyond the quota, within the bound under faults of
            docs/operations.md ("Across nodes"): at most (nodes - 1) x quota, since each node
            enforces the quota on its own count whatever totals reach it;
  rebuild   `ledger rebuild` from the log gives the live state hash;
  memory    peak RSS of every process under --max-rss-mib.

Usage (from the repository root, binaries built, broker script available):
  python3 scripts/soak.py --minutes 10 --out soak.json
  python3 scripts/soak.py --minutes 2 --bin target/debug      # a short run

Exit status 0 when every check holds, 1 otherwise. Nothing here is a mock: real binaries, a real
broker, real sockets.
"""

import argparse
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "soak-admin-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Upstream:
    """A plain HTTP/1.1 upstream answering 200; `stall(seconds)` makes it hold answers."""

    def __init__(self):
        self.stalled_until = 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                wait = outer.stalled_until - time.time()
                if wait > 0:
                    time.sleep(wait)
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A gateway killed mid-request resets its upstream connections: expected, not news.
        self.server.handle_error = lambda request, client_address: None
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stall(self, seconds):
        self.stalled_until = time.time() + seconds


class Proc:
    """A binary we start, kill -9 and restart, with its log in a file."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.proc = None
        self.peak_rss = 0.0
        self.kills = 0

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"})

    def sample(self):
        if self.proc and self.proc.poll() is None:
            self.peak_rss = max(self.peak_rss, rss_mib(self.proc.pid))

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.sample()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.sample()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_http(url, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return True
        except Exception:
            time.sleep(0.2)
    return False


def get_json(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def broker(action):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts/kafka-broker.sh"), action],
                         capture_output=True, text=True)
    return out.stdout + out.stderr


def broker_answers():
    return subprocess.run(["bash", os.path.join(ROOT, "scripts/kafka-broker.sh"), "status"]).returncode == 0


def broker_pid():
    """The pid of the broker scripts/kafka-broker.sh started (its pid file)."""
    path = os.path.join(os.environ.get("TANSU_DIR", "/tmp/tollgate-kafka"), "broker.pid")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release"))
    ap.add_argument("--brokers", default=os.environ.get("TOLLGATE_KAFKA", "127.0.0.1:9092"))
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--fault-every", type=float, default=12, help="mean seconds between faults")
    ap.add_argument("--faults", default="node,node,ledger,broker,stall",
                    help="the faults drawn from (comma-separated: node, ledger, broker, stall)")
    ap.add_argument("--max-rss-mib", type=float, default=512)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--out")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    if not broker_answers():
        print(broker("start"), file=sys.stderr)
    work = tempfile.mkdtemp(prefix="tollgate-soak-")
    # Topics of this run alone (a seed may be replayed: the fault schedule, not the data).
    run = f"soak{args.seed}-{os.getpid()}-{int(time.time())}"
    upstream = Upstream()
    with open(os.path.join(work, "cluster.key"), "w") as f:
        f.write(os.urandom(32).hex())

    # Keys: half with a small daily quota (exhausted during the run), half effectively unlimited.
    quotas = {f"soak-key-{i}": (3000 if i % 2 == 0 else 100_000_000) for i in range(args.keys)}
    seed_doc = {
        "routes": [{"id": "soak", "frontend": {"domains": ["*"]},
                    "backend": {"targets": [{"hostname": "127.0.0.1", "port": upstream.port}]},
                    "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls"}]}],
        "apiKeys": [{"clientId": k, "clientSecret": f"secret-of-{k}", "clientName": k,
                     "authorizedEntities": ["route_soak"], "dailyQuota": q, "monthlyQuota": 10 * q,
                     "throttlingQuota": 100_000} for k, q in quotas.items()],
    }
    with open(os.path.join(work, "entities.json"), "w") as f:
        json.dump(seed_doc, f)

    kafka = (f'[events]\nsink = "kafka"\n[events.kafka]\nbrokers = "{args.brokers}"\n'
             f'usage_topic = "{run}.usage"\nentities_topic = "{run}.entities"\n'
             f'totals_topic = "{run}.totals"\npartitions = 4\n')
    ledger_port = free_port()
    nodes = {}
    for name in ("a", "b"):
        port, admin = free_port(), free_port()
        cfg = os.path.join(work, f"{name}.toml")
        with open(cfg, "w") as f:
            f.write(f'[node]\nid = "{name}"\ncores = 1\ndata_dir = "{work}/{name}"\n'
                    f'[listeners.http]\naddr = "127.0.0.1:{port}"\n'
                    f'[admin]\naddr = "127.0.0.1:{admin}"\ntoken = "{TOKEN}"\n'
                    f'cluster_key_file = "{work}/cluster.key"\n'
                    f'[ledger]\nmode = "remote"\naddr = "127.0.0.1:{ledger_port}"\n'
                    f'[seed]\nentities = "{work}/entities.json"\n' + kafka)
        nodes[name] = (Proc(f"gateway-{name}", [os.path.join(args.bin, "gateway"), "--config", cfg],
                            os.path.join(work, f"{name}.log")), port, admin)
    ledger_cfg = os.path.join(work, "ledger.toml")
    with open(ledger_cfg, "w") as f:
        f.write(f'[node]\nid = "ledger"\ndata_dir = "{work}/ledger"\n'
                f'[ledger]\nmode = "remote"\naddr = "127.0.0.1:{ledger_port}"\n' + kafka)
    ledger = Proc("ledger", [os.path.join(args.bin, "ledger"), "--config", ledger_cfg],
                  os.path.join(work, "ledger.log"))

    for p, port, admin in nodes.values():
        p.start()
    for p, port, admin in nodes.values():
        if not wait_http(f"http://127.0.0.1:{admin}/health"):
            sys.exit(f"{p.name} did not start; see {p.log_path}")
    ledger.start()
    if not wait_http(f"http://127.0.0.1:{ledger_port}/health"):
        sys.exit(f"the ledger did not start; see {ledger.log_path}")

    # Clients: per key, 2xx seen, and requests whose answer never came (cut by a fault).
    lock = threading.Lock()
    seen = {k: {"ok": 0, "refused": 0, "unknown": 0, "failed": 0} for k in quotas}
    stop = threading.Event()

    def client(i):
        crng = random.Random(args.seed * 1000 + i)
        conns = {}
        while not stop.is_set():
            name = crng.choice(list(nodes))
            key = crng.choice(list(quotas))
            port = nodes[name][1]
            conn = conns.get(name)
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conns[name] = conn
            sent = False
            try:
                conn.putrequest("GET", "/soak")
                conn.putheader("Otoroshi-Client-Id", key)
                conn.putheader("Otoroshi-Client-Secret", f"secret-of-{key}")
                conn.endheaders()
                sent = True
                r = conn.getresponse()
                r.read()
                with lock:
                    if 200 <= r.status < 300:
                        seen[key]["ok"] += 1
                    elif r.status == 429:
                        seen[key]["refused"] += 1
                    else:
                        seen[key]["failed"] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conns.pop(name, None)
                with lock:
                    seen[key]["unknown" if sent else "failed"] += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()

    faults = []
    started = time.time()
    end = started + args.minutes * 60
    while time.time() < end:
        time.sleep(min(rng.expovariate(1 / args.fault_every), max(0, end - time.time())))
        for p, _, _ in nodes.values():
            p.sample()
        ledger.sample()
        if time.time() >= end:
            break
        action = rng.choice(args.faults.split(","))
        at = round(time.time() - started, 1)
        if action == "node":
            name = rng.choice(list(nodes))
            p = nodes[name][0]
            p.kill9()
            time.sleep(rng.uniform(0.5, 3))
            p.start()
            faults.append({"at_s": at, "kill9": p.name})
        elif action == "ledger":
            ledger.kill9()
            time.sleep(rng.uniform(0.5, 3))
            ledger.start()
            faults.append({"at_s": at, "kill9": "ledger"})
        elif action == "broker":
            pid = broker_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
            time.sleep(rng.uniform(1, 4))
            broker("start")
            faults.append({"at_s": at, "kill9": "broker"})
        else:
            seconds = rng.uniform(1, 4)
            upstream.stall(seconds)
            faults.append({"at_s": at, "stall_upstream_s": round(seconds, 1)})

    stop.set()
    for t in threads:
        t.join(timeout=30)

    # Drain: every node forwards its journal, the ledger folds it; wait until stable.
    def ledger_calls():
        out = {}
        for k in quotas:
            try:
                t = get_json(f"http://127.0.0.1:{ledger_port}/api/totals?apikey={k}")
            except Exception:
                return None
            out[k] = t
        return out

    # Stable for a minute: every node's forwarder and the ledger (which assigns itself every
    # partition) have caught up.
    stable, last, deadline = 0, None, time.time() + 600
    totals = None
    while time.time() < deadline and stable < 30:
        time.sleep(2)
        totals = ledger_calls()
        # The counts only: the ledger republishes totals with a new `updated_at`.
        key = json.dumps({k: (t.get("daily_calls"), t.get("monthly_calls"), t.get("nodes"))
                          for k, t in totals.items()}, sort_keys=True) if totals else None
        stable = stable + 1 if key and key == last else 0
        last = key

    report = {"seed": args.seed, "minutes": args.minutes, "work_dir": work, "faults": faults,
              "keys": {}, "checks": {}}
    lost = extra_over = 0
    node_over = []
    cluster_over = 0
    cluster_out_of_bound = []
    for k, q in quotas.items():
        t = (totals or {}).get(k) or {}
        calls = int(t.get("daily_calls", 0))
        per_node = {n: int(c.get("daily_calls", 0)) for n, c in (t.get("nodes") or {}).items()}
        s = seen[k]
        key_lost = max(0, s["ok"] - calls)
        key_extra = max(0, calls - s["ok"])
        lost += key_lost
        if key_extra > s["unknown"]:
            extra_over += key_extra - s["unknown"]
        for n, c in per_node.items():
            if c > q:
                node_over.append({"key": k, "node": n, "admitted": c, "quota": q})
        cluster_over = max(cluster_over, calls - q)
        if calls - q > (len(nodes) - 1) * q:
            cluster_out_of_bound.append({"key": k, "admitted": calls, "quota": q})
        report["keys"][k] = {"quota": q, "ledger_calls": calls, "clients_2xx": s["ok"],
                             "clients_429": s["refused"], "unknown_outcome": s["unknown"],
                             "failed": s["failed"], "lost": key_lost, "extra": key_extra,
                             "per_node": per_node}

    live = get_json(f"http://127.0.0.1:{ledger_port}/api/state")
    for p, _, _ in nodes.values():
        p.sample()
        p.stop()
    ledger.sample()
    ledger.stop()
    # With the ledger stopped, rebuild compares the replay with the live store itself.
    rebuilt = {}
    out = subprocess.run([os.path.join(args.bin, "ledger"), "--config", ledger_cfg, "rebuild"],
                         capture_output=True, text=True, timeout=600)
    try:
        rebuilt = json.loads(out.stdout[out.stdout.index("{"):])
    except (ValueError, IndexError):
        rebuilt = {"error": (out.stdout + out.stderr)[-2000:]}
    rebuilt_hash = rebuilt.get("state_hash")
    rss = {p.name: round(p.peak_rss, 1) for p in [n[0] for n in nodes.values()] + [ledger]}
    report["checks"] = {
        "lost_calls": lost,
        "billed_beyond_unknown_outcomes": extra_over,
        "node_over_quota": node_over,
        "cluster_overshoot_max": max(0, cluster_over),
        "cluster_over_bound": cluster_out_of_bound,
        "live_state_hash": live.get("state_hash"),
        "rebuilt_state_hash": rebuilt_hash,
        "rebuild_matches": rebuilt_hash is not None and rebuilt_hash == live.get("state_hash")
        and rebuilt.get("identical") is not False,
        "peak_rss_mib": rss,
        "rss_within_bound": all(v <= args.max_rss_mib for v in rss.values()),
        "drained": stable >= 30,
    }
    ok = (lost == 0 and extra_over == 0 and not node_over and not cluster_out_of_bound
          and report["checks"]["rebuild_matches"]
          and report["checks"]["rss_within_bound"] and report["checks"]["drained"])
    report["ok"] = ok
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
