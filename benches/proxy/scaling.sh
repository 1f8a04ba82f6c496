#!/usr/bin/env bash
# Scaling run: the Tollgate gateway, nginx (proxy_pass, upstream keepalive) and HAProxy
# (http-reuse always) at 1, 2, 4 and 8 cores side by side, in front of the same upstream (nginx
# `return 200`, 13-byte body) under the same wrk load, with the upstream and wrk on cores of their
# own. For each proxy and core count: requests/s, latency (wrk), CPU µs per request (the proxy's
# processes, from /proc/PID/stat), and the 1→N efficiency rps(N) / (N × rps(1)).
#
# Usage:  bash benches/proxy/scaling.sh        (from the repo root; see docs/benchmarks.md)
# Environment (defaults in brackets):
#   CORES_LIST ["1 2 4 8"]   RUNS [1]   DURATION [8] (s)   WARMUP [2] (s)
#   PROXIES ["gateway nginx haproxy"]   GATEWAY_BIN [target/release/gateway]
#   WRK_THREADS [4]  WRK_CONNS [256]
#   PROXY_FIRST_CPU [0] (proxies run on PROXY_FIRST_CPU .. +N-1)
#   UPSTREAM_CPUS / UPSTREAM_WORKERS / WRK_CPUS [≥16 cores: 8-11 / 4 / 12-15;
#                                                 fewer: last core / 1 / last core]
#   BUNDLE [] (a folder with bin/ and lib/ holding nginx, haproxy and wrk, for a machine without
#              them: see make-anchor-bundle.sh in the team's bench folder)
#   OUT_DIR [target/bench-scaling]
# Writes $OUT_DIR/scaling.jsonl (one line per run) and $OUT_DIR/scaling.md (the table).
set -euo pipefail

case ${1:-} in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "scaling.sh takes no arguments (settings are environment variables; see --help)" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
if [ -n "${BUNDLE:-}" ]; then
  export PATH=$BUNDLE/bin:$PATH LD_LIBRARY_PATH=$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
export PATH=$PATH:/usr/sbin:/sbin
NPROC=$(nproc)
CORES_LIST=${CORES_LIST:-1 2 4 8}
RUNS=${RUNS:-1}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
PROXIES=${PROXIES:-gateway nginx haproxy}
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/gateway}
WRK_THREADS=${WRK_THREADS:-4}
WRK_CONNS=${WRK_CONNS:-256}
PROXY_FIRST_CPU=${PROXY_FIRST_CPU:-0}
if [ "$NPROC" -ge 16 ]; then
  UPSTREAM_CPUS=${UPSTREAM_CPUS:-8-11}; UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-4}; WRK_CPUS=${WRK_CPUS:-12-15}
else
  last=$((NPROC - 1))
  UPSTREAM_CPUS=${UPSTREAM_CPUS:-$last}; UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}; WRK_CPUS=${WRK_CPUS:-$last}
fi
OUT_DIR=${OUT_DIR:-$REPO/target/bench-scaling}
UP_PORT=28081 NGINX_PORT=28082 HAPROXY_PORT=28083 GW_PORT=28084 GW_ADMIN=28085 GW_LEDGER=28086
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT_DIR"
W=$(mktemp -d /tmp/tollgate-scaling.XXXXXX)
log() { printf '[scaling %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
for b in nginx haproxy wrk taskset python3 curl; do
  command -v "$b" >/dev/null || { echo "scaling.sh: $b is missing (BUNDLE= a folder with it)" >&2; exit 1; }
done
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"

cpu_of() { # summed utime+stime ticks of the processes
  local s=0 p
  for p in "$@"; do s=$((s + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
  echo $s
}
wait_200() { # port
  local i
  for i in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H 'Host: bench.local' "http://127.0.0.1:$1/" || true)" = 200 ] && return 0
    sleep 0.05
  done
  return 1
}

nginx_conf() { # dir port workers cpus body location
  local d=$1 port=$2 workers=$3 body=$4 location=$5
  mkdir -p "$d/tmp" "$d/logs"
  cat >"$d/nginx.conf" <<EOF
worker_processes $workers; worker_cpu_affinity auto; daemon off; pid $d/pid; error_log $d/logs/e warn; $USER_LINE
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; client_body_temp_path $d/tmp; proxy_temp_path $d/tmp;
  fastcgi_temp_path $d/tmp; uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
  $body
  server { listen 127.0.0.1:$port reuseport backlog=4096; location / { $location } } }
EOF
}

# The upstream.
nginx_conf "$W/up" $UP_PORT "$UPSTREAM_WORKERS" "" 'default_type text/plain; return 200 "hello, world!";'
taskset -c "$UPSTREAM_CPUS" nginx -c "$W/up/nginx.conf" -p "$W/up" &
PIDS+=($!)
wait_200 $UP_PORT || { echo "upstream did not start" >&2; exit 1; }
log "nproc $NPROC; upstream on $UPSTREAM_CPUS ($UPSTREAM_WORKERS workers), wrk on $WRK_CPUS (-t$WRK_THREADS -c$WRK_CONNS)"

measure() { # name cores port pids...
  local name=$1 n=$2 port=$3; shift 3
  taskset -c "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP}s" -H 'Host: bench.local' "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  local r
  for r in $(seq "$RUNS"); do
    local c0 c1 out
    c0=$(cpu_of "$@")
    out=$(taskset -c "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --latency -H 'Host: bench.local' "http://127.0.0.1:$port/" 2>&1)
    c1=$(cpu_of "$@")
    python3 - "$name" "$n" "$r" "$c0" "$c1" "$CLK_TCK" <<PY >>"$OUT_DIR/scaling.jsonl"
import json, re, sys
name, n, r, c0, c1, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
out = """$out"""
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def lat(label):
    m = re.search(r"\s%s\s+([\d.]+)(us|ms|s)" % label, out)
    if not m: return None
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v if u == "ms" else v * 1000
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
print(json.dumps({"proxy": name, "cores": n, "run": r, "requests": reqs, "rps": rps,
    "cpu_us_per_req": (c1 - c0) * 1e6 / hz / max(reqs, 1), "p50_ms": lat("50%"), "p99_ms": lat("99%"),
    "non_2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else None}))
PY
    log "$name ${n}c run $r: $(tail -1 "$OUT_DIR/scaling.jsonl")"
  done
}

: >"$OUT_DIR/scaling.jsonl"
for n in $CORES_LIST; do
  cpus="$PROXY_FIRST_CPU-$((PROXY_FIRST_CPU + n - 1))"
  for p in $PROXIES; do
    case $p in
      nginx)
        nginx_conf "$W/px$n" $NGINX_PORT "$n" \
          "upstream be { server 127.0.0.1:$UP_PORT; keepalive 512; keepalive_requests 100000000; }" \
          'proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";'
        taskset -c "$cpus" nginx -c "$W/px$n/nginx.conf" -p "$W/px$n" & master=$!
        PIDS+=("$master")
        wait_200 $NGINX_PORT || { log "nginx ${n}w did not start"; continue; }
        measure nginx "$n" $NGINX_PORT $(pgrep -P "$master" | tr '\n' ' ')
        kill "$master"; wait "$master" 2>/dev/null || true
        ;;
      haproxy)
        cat >"$W/ha$n.cfg" <<EOF
global
  nbthread $n
  cpu-map auto:1/1-$n $PROXY_FIRST_CPU-$((PROXY_FIRST_CPU + n - 1))
  maxconn 20000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$UP_PORT
EOF
        taskset -c "$cpus" haproxy -f "$W/ha$n.cfg" >"$W/ha$n.log" 2>&1 & hp=$!
        PIDS+=("$hp")
        wait_200 $HAPROXY_PORT || { log "haproxy ${n}t did not start"; continue; }
        measure haproxy "$n" $HAPROXY_PORT "$hp"
        kill "$hp"; wait "$hp" 2>/dev/null || true
        ;;
      gateway)
        [ -x "$GATEWAY_BIN" ] || { log "no gateway binary at $GATEWAY_BIN"; continue; }
        d=$W/gw$n; mkdir -p "$d"
        cat >"$d/tollgate.toml" <<EOF
[node]
id = "scaling"
cores = $n
data_dir = "$d/data"
[listeners.http]
addr = "127.0.0.1:$GW_PORT"
[admin]
addr = "127.0.0.1:$GW_ADMIN"
token = "scaling-admin-token-0123456789"
[ledger]
mode = "remote"
addr = "127.0.0.1:$GW_LEDGER"
[seed]
entities = "entities.json"
EOF
        cat >"$d/entities.json" <<EOF
{"routes": [{"id": "bench", "frontend": {"domains": ["*"]},
  "backend": {"targets": [{"hostname": "127.0.0.1", "port": $UP_PORT}]}}]}
EOF
        (cd "$d" && exec taskset -c "$cpus" "$GATEWAY_BIN" --config "$d/tollgate.toml") >"$d/log" 2>&1 & gw=$!
        PIDS+=("$gw")
        wait_200 $GW_PORT || { log "gateway ${n}c did not start: $(tail -3 "$d/log")"; continue; }
        measure gateway "$n" $GW_PORT "$gw"
        kill "$gw"; wait "$gw" 2>/dev/null || true
        ;;
      *) echo "unknown proxy $p" >&2; exit 2 ;;
    esac
  done
done

python3 - "$OUT_DIR/scaling.jsonl" "$OUT_DIR/scaling.md" "$NPROC" "$(uname -r)" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["proxy"], r["cores"]), []).append(r)
proxies = sorted({r["proxy"] for r in rows})
cores = sorted({r["cores"] for r in rows})
lines = [f"Scaling run: {sys.argv[3]} CPUs, kernel {sys.argv[4]}", "",
         "| proxy | cores | req/s | CPU µs/req | p99 ms | efficiency vs 1 core |", "|---|---|---|---|---|---|"]
for p in proxies:
    base = by.get((p, 1))
    base_rps = statistics.median(r["rps"] for r in base) if base else None
    for c in cores:
        runs = by.get((p, c))
        if not runs:
            continue
        rps = statistics.median(r["rps"] for r in runs)
        cpu = statistics.median(r["cpu_us_per_req"] for r in runs)
        p99 = statistics.median(r["p99_ms"] or 0 for r in runs)
        eff = f"{rps / (c * base_rps):.2f}" if base_rps else "-"
        lines.append(f"| {p} | {c} | {rps:,.0f} | {cpu:.2f} | {p99:.2f} | {eff} |")
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
