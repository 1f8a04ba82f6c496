#!/usr/bin/env bash
# loadtest suite: direct upstream, nginx proxy, HAProxy and the Tollgate gateway (public route, and
# keyed route with its API-key check and quota admission) under the same load on pinned cores. For each target: a closed-loop run for its
# maximum throughput (with the target's CPU time per request from /proc/PID/stat), then open-loop
# runs at 25/50/75/90 % of that maximum. Writes OUT/suite.md (one table), OUT/suite.html (one
# report) and each run's JSON/HTML.
#
# Usage: loadtest/suite.sh [OUT]        (from the repository root; OUT defaults to target/suite)
# Env:   DURATION=10s  CONNS=50  GEN_CPUS / PROXY_CPUS / UP_CPUS (taskset lists; defaults below)
#        LOADTEST=path/to/loadtest (default: builds target/release/loadtest)
#        GATEWAY=path/to/gateway (default: builds target/release/gateway)
#        TARGETS="direct nginx haproxy gateway gateway-keyed"
# Only 127.0.0.1 is ever loaded. nginx, HAProxy and wrk come from Debian packages and are installed
# when missing. The system nginx/HAProxy configs are never used or touched.
set -euo pipefail
OUT=${1:-target/suite}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
DURATION=${DURATION:-10s}; CONNS=${CONNS:-50}
N=$(nproc)
if [ "$N" -ge 4 ]; then GEN_CPUS=${GEN_CPUS:-0}; PROXY_CPUS=${PROXY_CPUS:-1}; UP_CPUS=${UP_CPUS:-2}
else GEN_CPUS=${GEN_CPUS:-0}; PROXY_CPUS=${PROXY_CPUS:-1}; UP_CPUS=${UP_CPUS:-1}; fi
[ "$N" -lt 4 ] && echo "note: $N cores: the upstream shares core(s) $UP_CPUS with the proxy" >&2

for p in nginx haproxy wrk; do
  command -v $p >/dev/null || { apt-get update -q >/dev/null;
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx haproxy wrk >/dev/null; break; }
done
if [ -z "${LOADTEST:-}" ]; then cargo build --release -q -p loadtest; LOADTEST=target/release/loadtest; fi
if [ -z "${GATEWAY:-}" ]; then cargo build --release -q -p gateway; GATEWAY=target/release/gateway; fi
HZ=$(getconf CLK_TCK); W=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

ngx_conf() { # dir port body
  mkdir -p "$W/$1/tmp"; cat > "$W/$1/n.conf" <<NG
worker_processes 1; daemon off; pid $W/$1/pid; error_log $W/$1/e.log warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 100000000; client_body_temp_path $W/$1/tmp;
 proxy_temp_path $W/$1/tmp; fastcgi_temp_path $W/$1/tmp; uwsgi_temp_path $W/$1/tmp; scgi_temp_path $W/$1/tmp;
 upstream be { server 127.0.0.1:18181; keepalive 512; keepalive_requests 100000000; }
 server { listen 127.0.0.1:$2; $3 } }
NG
}
ticks() { local s=0; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# Upstream: nginx `return 200`, one worker.
ngx_conf up 18181 'location / { default_type text/plain; return 200 "hello, world!"; }'
taskset -c "$UP_CPUS" nginx -c "$W/up/n.conf" -p "$W/up" & PIDS+=($!); sleep 1
UP_WORKERS=$(pgrep -P "${PIDS[0]}" | tr '\n' ' ')

start_target() { # name → sets URL, HDRS and TPIDS (the processes whose CPU is counted)
  HDRS=()
  case $1 in
    direct) URL=http://127.0.0.1:18181/; TPIDS=$UP_WORKERS; TP="" ;;
    nginx)
      ngx_conf px 18182 'location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }'
      taskset -c "$PROXY_CPUS" nginx -c "$W/px/n.conf" -p "$W/px" & TP=$!; PIDS+=($TP); sleep 1
      URL=http://127.0.0.1:18182/; TPIDS=$(pgrep -P $TP | tr '\n' ' ') ;;
    haproxy)
      printf 'global\n  nbthread 1\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:18183\n  default_backend be\nbackend be\n  server s1 127.0.0.1:18181\n' > "$W/ha.cfg"
      taskset -c "$PROXY_CPUS" haproxy -f "$W/ha.cfg" & TP=$!; PIDS+=($TP); sleep 1
      URL=http://127.0.0.1:18183/; TPIDS=$TP ;;
    gateway|gateway-keyed)
      # One core, public route and keyed route (ApikeyCalls; a key whose quotas no run reaches).
      mkdir -p "$W/gw"
      cat > "$W/gw/gw.toml" <<TOML
[node]
id = "suite"
cores = 1
data_dir = "data"
[listeners.http]
addr = "127.0.0.1:18184"
[admin]
addr = "127.0.0.1:18185"
token = "suite-admin-token"
[seed]
entities = "gw.json"
TOML
      cat > "$W/gw/gw.json" <<JSON
{"backends": [{"id": "up", "backend": {"targets": [{"hostname": "127.0.0.1", "port": 18181}]}}],
 "routes": [
  {"id": "public", "frontend": {"domains": ["public.suite.local"]}, "backend_ref": "up"},
  {"id": "keyed", "frontend": {"domains": ["keyed.suite.local"]}, "backend_ref": "up",
   "plugins": [{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]}],
 "apiKeys": [{"clientId": "suite-key", "clientSecret": "suite-secret", "authorizedEntities": ["route_keyed"],
   "throttlingQuota": 1000000000, "dailyQuota": 1000000000000, "monthlyQuota": 1000000000000}]}
JSON
      taskset -c "$PROXY_CPUS" "$GATEWAY" --config "$W/gw/gw.toml" 2> "$W/gw/log" & TP=$!; PIDS+=($TP); sleep 1
      URL=http://127.0.0.1:18184/; TPIDS=$TP
      if [ "$1" = gateway ]; then HDRS=(-H "Host: public.suite.local")
      else HDRS=(-H "Host: keyed.suite.local" -H "Otoroshi-Client-Id: suite-key" -H "Otoroshi-Client-Secret: suite-secret"); fi ;;
  esac
}

TARGETS=${TARGETS:-"direct nginx haproxy gateway gateway-keyed"}
ROWS="$W/rows.tsv"; : > "$ROWS"
for T in $TARGETS; do
  start_target "$T" || continue
  run() { taskset -c "$GEN_CPUS" "$LOADTEST" run -q --url "$URL" -c "$CONNS" "${HDRS[@]}" "$@"; }
  run -d 2s > /dev/null                                   # warm the target
  c0=$(ticks $TPIDS)
  run -d "$DURATION" --json "$OUT/$T-max.json" --html "$OUT/$T-max.html" > "$OUT/$T-max.txt"
  c1=$(ticks $TPIDS)
  REQ=$(jget "$OUT/$T-max.json" 'd["requests"]'); MAX=$(jget "$OUT/$T-max.json" 'd["rps"]')
  CPU=$(python3 -c "print(round(($c1-$c0)*1e6/$HZ/max($REQ,1),2))")
  LINE="$T	$MAX	$CPU	$(jget "$OUT/$T-max.json" 'd["latency_us"]["p50"]')	$(jget "$OUT/$T-max.json" 'd["latency_us"]["p99"]')"
  # Equal rate for every target: 75 % of nginx's maximum (nginx runs before the other proxies).
  if [ "$T" = nginx ]; then EQ=$(python3 -c "print(int($MAX*0.75))"); fi
  if [ -n "${EQ:-}" ] && [ "$T" != direct ]; then
    run -R "$EQ" -d "$DURATION" --warmup 1s --json "$OUT/$T-eq.json" > "$OUT/$T-eq.txt"
    EQP99=$(jget "$OUT/$T-eq.json" 'd["latency_us"]["p99"]')
  else EQP99="-"; fi
  for pct in 25 50 75 90; do
    R=$(python3 -c "print(int($MAX*$pct/100))")
    run -R "$R" -d "$DURATION" --warmup 1s --json "$OUT/$T-$pct.json" > "$OUT/$T-$pct.txt"
    LINE="$LINE	$(jget "$OUT/$T-$pct.json" 'd["latency_us"]["p99"]')"
  done
  echo "$LINE	$EQP99	${EQ:--}" >> "$ROWS"
  [ -n "$TP" ] && { kill "$TP"; wait "$TP" 2>/dev/null || true; }
done

python3 - "$ROWS" "$OUT" "$GEN_CPUS" "$PROXY_CPUS" "$UP_CPUS" "$CONNS" "$DURATION" <<'PY'
import sys, html, re
rows=[l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
out, gen, px, up, conns, dur = sys.argv[2:8]
base=next((r for r in rows if r[0]=="nginx"), None)
head=["target","max req/s","CPU µs/req","p50 µs (max)","p99 µs (max)","p99 µs @25%","@50%","@75%","@90%","p99 µs @ equal rate","req/s ÷ nginx","CPU ÷ nginx"]
table=[]
for r in rows:
    rr=[r[0], f"{float(r[1]):.0f}", r[2]]+r[3:9]+[r[9]]
    rr+= [f"{float(r[1])/float(base[1]):.2f}", f"{float(r[2])/float(base[2]):.2f}"] if base and r[0]!="direct" else ["-","-"]
    table.append(rr)
eq=next((r[10] for r in rows if r[10] != "-"), "-")
cmd=f"loadtest/suite.sh (cores: generator {gen}, proxy {px}, upstream {up}; {conns} connections, {dur} per run; equal rate = {eq} req/s, 75 % of nginx's maximum)"
md=[f"Command: `{cmd}`","", "| "+" | ".join(head)+" |", "|"+"---|"*len(head)]+["| "+" | ".join(r)+" |" for r in table]
open(f"{out}/suite.md","w").write("\n".join(md)+"\n"); print("\n".join(md))
parts=[f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>loadtest suite</title></head><body><h1>loadtest suite</h1><p>{html.escape(cmd)}</p><table border='1' cellpadding='4'><tr>"+"".join(f"<th>{html.escape(h)}</th>" for h in head)+"</tr>"]
parts+=["<tr>"+"".join(f"<td>{html.escape(c)}</td>" for c in r)+"</tr>" for r in table]
parts.append("</table>")
for r in rows:
    page=open(f"{out}/{r[0]}-max.html").read()
    style=re.search(r"<style>.*?</style>", page, re.S)
    body=page.split("<body>",1)[1].rsplit("</body>",1)[0].replace("<h1>","<h2>").replace("</h1>","</h2>")
    parts.append(f"<section>{style.group(0) if style else ''}{body}</section>")
parts.append("</body></html>")
open(f"{out}/suite.html","w").write("\n".join(parts))
PY
echo "wrote $OUT/suite.md and $OUT/suite.html"
