#!/usr/bin/env bash
# Proxy comparison: nginx (proxy_pass, upstream keepalive), HAProxy (http-reuse always) and the
# Tollgate gateway (public route, keyed route with ApikeyCalls, and the route of a published API
# with an apikey consumer called with its subscription's issued key), each on one core, in front of
# the same upstream (nginx `return 200`, 13-byte body) under the same wrk load.
#
# For each proxy: requests/s and p50/p99 from wrk --latency; user and system CPU µs per request from
# /proc/PID/stat of the proxy's serving process(es) before and after each run; RSS per idle
# keep-alive connection (10,000 idle connections). Runs alternate between proxies (A B C A B C …).
# Prints a table (median, min–max) and writes $OUT_DIR/compare.json and $OUT_DIR/compare.md (raw
# wrk outputs in $OUT_DIR/raw, the proxies' logs and the gateway's config in $OUT_DIR/logs).
#
# Usage:  bash benches/proxy/compare.sh            (from the repo root; see docs/benchmarks.md)
# Environment (defaults in brackets):
#   RUNS [3]  DURATION [10] (s per run)  WARMUP [3] (s per proxy, unmeasured)
#   THREADS [1] CONNS [50] (wrk -t -c)  UPSTREAM_WORKERS [1] (nginx workers of the upstream)
#   PROXIES ["nginx haproxy gateway gateway-keyed"]; also gateway-consumer (an API's apikey consumer)
#   GATEWAY_BIN [target/release/gateway]  GATEWAY_ARGS [] (extra arguments, e.g. "--io epoll")
#   GATEWAY_LEDGER [embedded] ("remote": no in-process ledger; usage still journaled)
#   PROXY_CPUS / UPSTREAM_CPUS / WRK_CPUS  taskset core lists [2 cores: 0 / 1 / 1; ≥3 cores: 0 / 1 / 2]
#   IDLE_CONNS [10000]  SKIP_IDLE [0] (1: skip the idle-connection memory part)
#   UPSTREAM_PORT [18081]  NGINX_PORT [18082]  HAPROXY_PORT [18083]
#   GATEWAY_PORT [18084]  GATEWAY_ADMIN_PORT [18085]  GATEWAY_LEDGER_PORT [18086]
#   NICE [0] (e.g. -10: run every benchmark process at that priority, on a shared machine; root)
#   OUT_DIR [target/bench-proxy]  KEEP_TMP [0] (1: keep the temp dir with configs and logs)
# Needs nginx, haproxy, wrk, curl, python3, taskset; installs the missing ones with apt-get (without
# starting their services). Never touches the system's nginx/haproxy configs or services: everything
# runs from a temp dir, in the foreground of this script, on 127.0.0.1, and is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case ${1:-} in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "compare.sh takes no arguments (settings are environment variables; see --help)" >&2; exit 2 ;;
esac
REPO=$(cd "$HERE/../.." && pwd)
SETTINGS="RUNS DURATION WARMUP THREADS CONNS UPSTREAM_WORKERS PROXIES GATEWAY_BIN GATEWAY_ARGS IDLE_CONNS
  SKIP_IDLE PROXY_CPUS UPSTREAM_CPUS WRK_CPUS NICE"
CMD_ENV=""
for v in $SETTINGS; do [ -n "${!v+x}" ] && CMD_ENV+="$v=${!v@Q} "; done
export PATH=$PATH:/usr/sbin:/sbin

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-1}
CONNS=${CONNS:-50}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
PROXIES=${PROXIES:-nginx haproxy gateway gateway-keyed}
GATEWAY_LEDGER=${GATEWAY_LEDGER:-embedded}
GATEWAY_BIN=${GATEWAY_BIN:-$REPO/target/release/gateway}
GATEWAY_ARGS=${GATEWAY_ARGS:-}
IDLE_CONNS=${IDLE_CONNS:-10000}
SKIP_IDLE=${SKIP_IDLE:-0}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
HAPROXY_PORT=${HAPROXY_PORT:-18083}
GATEWAY_PORT=${GATEWAY_PORT:-18084}
GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-18085}
GATEWAY_LEDGER_PORT=${GATEWAY_LEDGER_PORT:-18086}
OUT_DIR=${OUT_DIR:-$REPO/target/bench-proxy}
KEEP_TMP=${KEEP_TMP:-0}
START_TIMEOUT=${START_TIMEOUT:-20}
NICE=${NICE:-0}

PUBLIC_HOST=public.tollgate.local
KEYED_HOST=api.tollgate.local
KEY_ID=bench-client
CONSUMER_HOST=consumer.tollgate.local
SUB_KEY_ID=bench-subscriber
SUB_KEY_SECRET=bench-subscriber-secret-0123456789
KEY_SECRET=bench-secret-0123456789abcdef

NPROC=$(nproc)
if [ "$NPROC" -ge 3 ]; then
  def_proxy=0 def_up=1 def_wrk=2
elif [ "$NPROC" -eq 2 ]; then
  def_proxy=0 def_up=1 def_wrk=1
else
  def_proxy=0 def_up=0 def_wrk=0
fi
PROXY_CPUS=${PROXY_CPUS:-$def_proxy}
UPSTREAM_CPUS=${UPSTREAM_CPUS:-$def_up}
WRK_CPUS=${WRK_CPUS:-$def_wrk}

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'compare.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$NPROC" -ge 2 ] || log "warning: 1 core: proxy, upstream and wrk share it; figures are not comparable to the anchors"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a positive integer (seconds)"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be an integer (seconds)"
[[ $UPSTREAM_WORKERS =~ ^[1-9][0-9]*$ ]] || die "UPSTREAM_WORKERS must be a positive integer"
[[ $IDLE_CONNS =~ ^[1-9][0-9]*$ ]] || die "IDLE_CONNS must be a positive integer"
[[ $NICE =~ ^-?[0-9]+$ ]] || die "NICE must be an integer"
PFX=() # prefix of every benchmark process (upstream, proxies, wrk, idle client)
[ "$NICE" != 0 ] && PFX=(nice -n "$NICE")

# --- tools -----------------------------------------------------------------------------------------
install_missing() {
  local pkgs=() b
  for b in nginx haproxy wrk curl python3 taskset; do
    if ! command -v "$b" >/dev/null 2>&1; then
      case $b in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$b") ;; esac
    fi
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${pkgs[*]} and no apt-get to install them"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing ${pkgs[*]}: run as root or install them"
    sudo=(sudo)
  fi
  log "installing ${pkgs[*]} with apt-get"
  # policy-rc.d answering 101 keeps Debian from starting the nginx/haproxy services on install.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee $policy >/dev/null && "${sudo[@]}" chmod 755 $policy && made_policy=1
  fi
  local rc=0
  { "${sudo[@]}" apt-get update -q >/dev/null &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } || rc=$?
  [ $made_policy -eq 1 ] && "${sudo[@]}" rm -f $policy
  [ $rc -eq 0 ] || die "apt-get install ${pkgs[*]} failed"
}
install_missing

CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT_DIR" "$OUT_DIR/raw"
rm -f "$OUT_DIR"/raw/*.txt
W="" # the temp dir, made once the ports are known to be free

# --- process bookkeeping and cleanup ---------------------------------------------------------------
PIDS=()      # every long-running process this script started (masters and their workers)
CURRENT=""   # the wrk / python client running now, if any
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CURRENT" ]; then kill -TERM "$CURRENT" 2>/dev/null || true; fi
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -z "$W" ]; then
    :
  elif [ "$KEEP_TMP" = 1 ] || { [ $rc -ne 0 ] && [ $rc -ne 130 ] && [ $rc -ne 143 ]; }; then
    log "configs and logs kept in $W"
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- helpers ---------------------------------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_port_free() {
  if port_busy "$1"; then
    local who
    who=$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:\(.*\)/\1/p' | head -1)
    die "port 127.0.0.1:$1 ($2) is busy${who:+ (held by $who)}; free it or set $3"
  fi
}

# wait_http PID PORT HOST [curl args…]: until the port answers 200 (0), the process dies (2), or timeout (1).
wait_http() {
  local pid=$1 port=$2 host=$3; shift 3
  local deadline=$((SECONDS + START_TIMEOUT)) code
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 2
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $host" "$@" "http://127.0.0.1:$port/" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

# cpu_ticks PIDS…: "utime stime" summed over the processes (each /proc/PID/stat sums its threads).
cpu_ticks() {
  local p u=0 s=0 f
  for p in "$@"; do
    f=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || { echo "process $p is gone" >&2; return 1; }
    # With "pid (comm) " dropped, utime and stime are fields 12 and 13.
    read -r -a a <<<"$f"
    u=$((u + a[11])); s=$((s + a[12]))
  done
  echo "$u $s"
}

expand_cpus() { # "0-2,5" -> "0 1 2 5"
  local part i out=() IFS=,
  for part in $1; do
    if [[ $part == *-* ]]; then
      for ((i = ${part%-*}; i <= ${part#*-}; i++)); do out+=("$i"); done
    else
      out+=("$part")
    fi
  done
  echo "${out[@]}"
}
# core_ticks "CPU…": "busy total" ticks of those cores from /proc/stat (busy: all but idle and
# iowait). Irq and softirq count as busy: without IRQ_TIME_ACCOUNTING the softirq work done in the
# proxy's context is also in its stime, so "busy - proxy" is what other tasks (and ksoftirqd) used.
core_ticks() {
  awk -v set=" $1 " '$1 ~ /^cpu[0-9]+$/ && index(set, " " substr($1, 4) " ") {
    busy += $2 + $3 + $4 + $7 + $8 + $9; tot += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }
    END { print busy + 0, tot + 0 }' /proc/stat
}

affinity_of() { # the distinct CPU lists the process's threads may run on, e.g. "0" or "0,0-1"
  local p=$1 t lists
  lists=$(for t in /proc/"$p"/task/*; do awk '/^Cpus_allowed_list/{print $2}' "$t/status" 2>/dev/null; done | sort -u | paste -sd, -)
  echo "$lists"
}

children_of() { pgrep -P "$1" | tr '\n' ' ' | sed 's/ $//'; }

# --- configs ---------------------------------------------------------------------------------------
NOFILE_HARD=$(ulimit -Hn)
if [ "$NOFILE_HARD" = unlimited ]; then ulimit -n 1048576 2>/dev/null || ulimit -n 65536; else ulimit -n "$NOFILE_HARD"; fi
NOFILE=$(ulimit -n)
if [ "$SKIP_IDLE" != 1 ] && [ "$NOFILE" -lt $((IDLE_CONNS + 256)) ]; then
  log "warning: open-file limit $NOFILE < IDLE_CONNS+256: idle connections will be capped"
fi
WORKER_CONNS=$((IDLE_CONNS + 1024))
[ "$WORKER_CONNS" -gt "$NOFILE" ] && WORKER_CONNS=$NOFILE
USER_LINE=""
[ "$(id -u)" -eq 0 ] && USER_LINE="user root;"

nginx_conf() { # dir listen-port body-of-http-block [workers]
  local d=$1 port=$2 body=$3 workers=${4:-1} affinity=""
  [ "$workers" -gt 1 ] && affinity="worker_cpu_affinity auto;"
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<EOF
worker_processes $workers;
$affinity
daemon off;
master_process on;
$USER_LINE
pid $d/nginx.pid;
error_log $d/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $WORKER_CONNS; multi_accept off; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
$body
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { $(if [ "$port" = "$UPSTREAM_PORT" ]; then echo 'default_type text/plain; return 200 "hello, world!";'; else echo 'proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";'; fi) }
  }
}
EOF
}

# start_nginx NAME DIR PORT CPUS: sets NGINX_MASTER and NGINX_WORKERS.
start_nginx() {
  local name=$1 d=$2 port=$3 cpus=$4
  "${PFX[@]}" taskset -c "$cpus" nginx -q -e "$d/error.log" -p "$d" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
  NGINX_MASTER=$!
  PIDS+=("$NGINX_MASTER")
  local rc=0
  wait_http "$NGINX_MASTER" "$port" "$PUBLIC_HOST" || rc=$?
  [ $rc -eq 0 ] || die "$name (nginx) did not answer on 127.0.0.1:$port: $(tail -3 "$d/error.log" "$d/stdout.log" 2>/dev/null | tr '\n' ' ')"
  NGINX_WORKERS=$(children_of "$NGINX_MASTER")
  [ -n "$NGINX_WORKERS" ] || die "$name: no nginx worker process"
  local w
  for w in $NGINX_WORKERS; do PIDS+=("$w"); done
}

# --- proxies ---------------------------------------------------------------------------------------
declare -A PORT HOSTH EXTRA PIDS_OF AVAIL REASON LABEL IDLEKEY
for p in $PROXIES; do
  case $p in
    nginx|haproxy|gateway|gateway-keyed|gateway-consumer) ;;
    *) die "unknown proxy '$p' in PROXIES (nginx haproxy gateway gateway-keyed gateway-consumer)" ;;
  esac
done
wants() { [[ " $PROXIES " == *" $1 "* ]]; }

check_port_free "$UPSTREAM_PORT" upstream UPSTREAM_PORT
wants nginx && check_port_free "$NGINX_PORT" "nginx proxy" NGINX_PORT
wants haproxy && check_port_free "$HAPROXY_PORT" haproxy HAPROXY_PORT
if wants gateway || wants gateway-keyed || wants gateway-consumer; then
  check_port_free "$GATEWAY_PORT" gateway GATEWAY_PORT
  check_port_free "$GATEWAY_ADMIN_PORT" "gateway admin" GATEWAY_ADMIN_PORT
  check_port_free "$GATEWAY_LEDGER_PORT" "gateway ledger" GATEWAY_LEDGER_PORT
fi

W=$(mktemp -d /tmp/tollgate-compare.XXXXXX)
log "cores: $NPROC; proxy on $PROXY_CPUS, upstream on $UPSTREAM_CPUS, wrk on $WRK_CPUS; open files $NOFILE"
log "temp dir $W"

# Upstream.
nginx_conf "$W/upstream" "$UPSTREAM_PORT" "" "$UPSTREAM_WORKERS"
start_nginx upstream "$W/upstream" "$UPSTREAM_PORT" "$UPSTREAM_CPUS"
UPSTREAM_PIDS=$NGINX_WORKERS
body_len=$(curl -s --max-time 2 "http://127.0.0.1:$UPSTREAM_PORT/" | wc -c)
log "upstream nginx up (workers $UPSTREAM_PIDS), body $body_len bytes"

if wants nginx; then
  nginx_conf "$W/nginx" "$NGINX_PORT" "  upstream be { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 100000000; keepalive_timeout 300s; }"
  start_nginx "nginx proxy" "$W/nginx" "$NGINX_PORT" "$PROXY_CPUS"
  PORT[nginx]=$NGINX_PORT; PIDS_OF[nginx]=$NGINX_WORKERS; AVAIL[nginx]=1
  LABEL[nginx]="nginx (proxy_pass, keepalive 64)"
  log "nginx proxy up (worker $NGINX_WORKERS)"
fi

if wants haproxy; then
  mkdir -p "$W/haproxy"
  # maxconn above what IDLE_CONNS needs. HAProxy sizes its fd limit for 2 fds per connection and by
  # default (strict-limits) refuses to start when it cannot raise it; idle client connections use
  # one fd each, so where the hard limit is short, let it start with a warning instead.
  strict=""
  [ "$NOFILE" -lt $((2 * (IDLE_CONNS + 1024) + 100)) ] && strict="  no strict-limits"
  cat >"$W/haproxy/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $((IDLE_CONNS + 1024))
$strict
  pidfile $W/haproxy/haproxy.pid
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-request 10s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$UPSTREAM_PORT
EOF
  "${PFX[@]}" taskset -c "$PROXY_CPUS" haproxy -db -f "$W/haproxy/haproxy.cfg" >"$W/haproxy/stdout.log" 2>&1 &
  HA=$!
  PIDS+=("$HA")
  rc=0; wait_http "$HA" "$HAPROXY_PORT" "$PUBLIC_HOST" || rc=$?
  [ $rc -eq 0 ] || die "haproxy did not answer on 127.0.0.1:$HAPROXY_PORT: $(tail -5 "$W/haproxy/stdout.log" | tr '\n' ' ')"
  PORT[haproxy]=$HAPROXY_PORT; PIDS_OF[haproxy]=$HA; AVAIL[haproxy]=1
  LABEL[haproxy]="HAProxy (http-reuse always)"
  log "haproxy up (pid $HA)"
fi

GW_PID=""
if wants gateway || wants gateway-keyed || wants gateway-consumer; then
  gw_reason=""
  mkdir -p "$W/gateway/data"
  cat >"$W/gateway/tollgate.toml" <<EOF
# Written by benches/proxy/compare.sh.
[node]
id = "bench"
cores = 1
data_dir = "$W/gateway/data"

[listeners.http]
addr = "127.0.0.1:$GATEWAY_PORT"

[admin]
addr = "127.0.0.1:$GATEWAY_ADMIN_PORT"
token = "bench-admin-token-0123456789"

[events]
sink = "embedded"

[ledger]
mode = "$GATEWAY_LEDGER"
addr = "127.0.0.1:$GATEWAY_LEDGER_PORT"

[quotas]
timezone = "UTC"

[seed]
entities = "entities.json"
EOF
  cat >"$W/gateway/entities.json" <<EOF
{
  "backends": [
    {
      "id": "backend_bench",
      "name": "bench upstream",
      "backend": {
        "targets": [{ "hostname": "127.0.0.1", "port": $UPSTREAM_PORT, "tls": false, "weight": 1 }],
        "load_balancing": { "type": "RoundRobin" }
      }
    }
  ],
  "routes": [
    {
      "id": "route_public",
      "name": "public",
      "enabled": true,
      "frontend": { "domains": ["$PUBLIC_HOST"], "strip_path": true },
      "backend_ref": "backend_bench",
      "plugins": []
    },
    {
      "id": "route_keyed",
      "name": "keyed",
      "enabled": true,
      "frontend": { "domains": ["$KEYED_HOST"], "strip_path": true },
      "backend_ref": "backend_bench",
      "plugins": [{ "plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "enabled": true, "config": {} }]
    }
  ],
  "apiKeys": [
    {
      "clientId": "$KEY_ID",
      "clientSecret": "$KEY_SECRET",
      "clientName": "bench",
      "description": "benches/proxy/compare.sh key, quotas far above any run",
      "authorizedEntities": ["route_route_keyed"],
      "enabled": true,
      "readOnly": false,
      "allowClientIdOnly": false,
      "throttlingQuota": 1000000000000,
      "dailyQuota": 1000000000000,
      "monthlyQuota": 1000000000000,
      "tags": ["bench"],
      "metadata": {}
    },
    {
      "clientId": "$SUB_KEY_ID",
      "clientSecret": "$SUB_KEY_SECRET",
      "clientName": "bench subscriber",
      "description": "the key issued to the bench subscription (as POST /api/apis/bench/subscriptions issues it)",
      "authorizedEntities": ["api_bench"],
      "throttlingQuota": 1000000000000,
      "dailyQuota": 1000000000000,
      "monthlyQuota": 1000000000000,
      "metadata": { "subscription": "bench-subscription", "consumer": "bench-consumer" }
    }
  ],
  "apis": [
    {
      "id": "bench",
      "name": "bench API",
      "state": "published",
      "routes": [
        { "id": "route_consumer", "frontend": { "domains": ["$CONSUMER_HOST"], "strip_path": true }, "backend": "backend_bench" }
      ],
      "consumers": [
        { "id": "bench-consumer", "kind": "apikey", "status": "published",
          "throttlingQuota": 1000000000000, "dailyQuota": 1000000000000, "monthlyQuota": 1000000000000 }
      ],
      "subscriptions": [
        { "id": "bench-subscription", "consumer_ref": "bench-consumer", "status": "enabled", "apikeys": ["$SUB_KEY_ID"] }
      ]
    }
  ]
}
EOF
  if [ ! -x "$GATEWAY_BIN" ]; then
    gw_reason="no binary at $GATEWAY_BIN; build it with cargo build --release -p gateway"
  elif ! "$GATEWAY_BIN" check --config "$W/gateway/tollgate.toml" >"$W/gateway/check.log" 2>&1; then
    gw_reason="config rejected by gateway check: $(head -c 300 "$W/gateway/check.log" | tr '\n' ' ')"
  else
    # shellcheck disable=SC2086
    (cd "$W/gateway" && exec "${PFX[@]}" taskset -c "$PROXY_CPUS" "$GATEWAY_BIN" --config "$W/gateway/tollgate.toml" $GATEWAY_ARGS) \
      >"$W/gateway/stdout.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    rc=0; wait_http "$GW_PID" "$GATEWAY_PORT" "$PUBLIC_HOST" || rc=$?
    if [ $rc -eq 2 ]; then
      grc=0; wait "$GW_PID" || grc=$?
      gw_reason="exited at start with code $grc: $(head -c 200 "$W/gateway/stdout.log" | tr '\n' ' ')"
      GW_PID=""
    elif [ $rc -ne 0 ]; then
      gw_reason="no 200 from 127.0.0.1:$GATEWAY_PORT (Host $PUBLIC_HOST) within ${START_TIMEOUT}s"
      kill -TERM "$GW_PID" 2>/dev/null || true
      GW_PID=""
    fi
  fi
  LABEL[gateway]="Tollgate gateway, public route${GATEWAY_ARGS:+ ($GATEWAY_ARGS)}"
  LABEL[gateway-keyed]="Tollgate gateway, keyed route${GATEWAY_ARGS:+ ($GATEWAY_ARGS)}"
  LABEL[gateway-consumer]="Tollgate gateway, API apikey consumer${GATEWAY_ARGS:+ ($GATEWAY_ARGS)}"
  for g in gateway gateway-keyed gateway-consumer; do
    wants $g || continue
    if [ -n "$GW_PID" ]; then
      PORT[$g]=$GATEWAY_PORT; PIDS_OF[$g]=$GW_PID; AVAIL[$g]=1
    else
      AVAIL[$g]=0; REASON[$g]=$gw_reason
    fi
  done
  if [ -n "$GW_PID" ] && wants gateway-keyed; then
    code=$(curl -s -o "$W/gateway/keyed-probe.txt" -w '%{http_code}' --max-time 2 -H "Host: $KEYED_HOST" \
      -H "Otoroshi-Client-Id: $KEY_ID" -H "Otoroshi-Client-Secret: $KEY_SECRET" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    if [ "$code" != 200 ]; then
      AVAIL[gateway-keyed]=0
      REASON[gateway-keyed]="keyed route answered $code: $(head -c 200 "$W/gateway/keyed-probe.txt" | tr '\n' ' ')"
    fi
  fi
  if [ -n "$GW_PID" ] && wants gateway-consumer; then
    code=$(curl -s -o "$W/gateway/consumer-probe.txt" -w '%{http_code}' --max-time 2 -H "Host: $CONSUMER_HOST" \
      -H "Otoroshi-Client-Id: $SUB_KEY_ID" -H "Otoroshi-Client-Secret: $SUB_KEY_SECRET" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    anon=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $CONSUMER_HOST" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    if [ "$code" != 200 ] || [ "$anon" != 401 ]; then
      AVAIL[gateway-consumer]=0
      REASON[gateway-consumer]="consumer route answered $code with the key, $anon without: $(head -c 200 "$W/gateway/consumer-probe.txt" | tr '\n' ' ')"
    fi
  fi
  if [ -n "$GW_PID" ]; then
    log "gateway up (pid $GW_PID)"
  else
    log "gateway not available: $gw_reason"
  fi
fi
HOSTH[nginx]=$PUBLIC_HOST; HOSTH[haproxy]=$PUBLIC_HOST; HOSTH[gateway]=$PUBLIC_HOST
HOSTH[gateway-keyed]=$KEYED_HOST
EXTRA[gateway-keyed]="Otoroshi-Client-Id: $KEY_ID|Otoroshi-Client-Secret: $KEY_SECRET"
IDLEKEY[gateway-keyed]=gateway
HOSTH[gateway-consumer]=$CONSUMER_HOST
EXTRA[gateway-consumer]="Otoroshi-Client-Id: $SUB_KEY_ID|Otoroshi-Client-Secret: $SUB_KEY_SECRET"
IDLEKEY[gateway-consumer]=gateway

ACTIVE=()
for p in $PROXIES; do [ "${AVAIL[$p]:-0}" = 1 ] && ACTIVE+=("$p"); done

# --- load runs -------------------------------------------------------------------------------------
# run_wrk PROXY SECONDS OUTFILE
run_wrk() {
  local p=$1 secs=$2 outfile=$3 hdr=()
  hdr=(-H "Host: ${HOSTH[$p]}")
  if [ -n "${EXTRA[$p]:-}" ]; then
    local IFS='|' h
    for h in ${EXTRA[$p]}; do hdr+=(-H "$h"); done
  fi
  "${PFX[@]}" taskset -c "$WRK_CPUS" wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency "${hdr[@]}" \
    "http://127.0.0.1:${PORT[$p]}/" >"$outfile" 2>&1 &
  CURRENT=$!
  local rc=0
  wait "$CURRENT" || rc=$?
  CURRENT=""
  return $rc
}

PROXY_CORES=$(expand_cpus "$PROXY_CPUS")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RUNS_FILE=$W/runs.jsonl
: >"$RUNS_FILE"
if [ ${#ACTIVE[@]} -gt 0 ]; then
  if [ "$WARMUP" -gt 0 ]; then
    for p in "${ACTIVE[@]}"; do
      log "warm-up $p ${WARMUP}s"
      run_wrk "$p" "$WARMUP" "$W/warmup-$p.txt" || die "wrk failed against $p: $(tail -3 "$W/warmup-$p.txt")"
    done
  fi
  for r in $(seq "$RUNS"); do
    for p in "${ACTIVE[@]}"; do
      f=$OUT_DIR/raw/$p-$r.txt
      # shellcheck disable=SC2086
      c0=$(cpu_ticks ${PIDS_OF[$p]}) || die "$p died before round $r (logs in $W)"
      k0=$(core_ticks "$PROXY_CORES")
      run_wrk "$p" "$DURATION" "$f" || die "wrk failed against $p: $(tail -3 "$f")"
      k1=$(core_ticks "$PROXY_CORES")
      # shellcheck disable=SC2086
      c1=$(cpu_ticks ${PIDS_OF[$p]}) || die "$p died during round $r (logs in $W)"
      python3 "$HERE/stats.py" record --proxy "$p" --round "$r" --wrk "$f" --clk-tck "$CLK_TCK" \
        --cpu0 "$c0" --cpu1 "$c1" --core0 "$k0" --core1 "$k1" >>"$RUNS_FILE"
      log "round $r/$RUNS $p: $(tail -1 "$RUNS_FILE" | python3 "$HERE/stats.py" brief)"
    done
  done
fi

# --- idle keep-alive memory ------------------------------------------------------------------------
IDLE_FILE=$W/idle.jsonl
: >"$IDLE_FILE"
if [ "$SKIP_IDLE" != 1 ]; then
  for p in "${ACTIVE[@]}"; do
    [ "$p" = gateway-keyed ] || [ "$p" = gateway-consumer ] && continue # same process as the public route: measured once
    log "idle memory $p: $IDLE_CONNS keep-alive connections"
    # shellcheck disable=SC2086
    "${PFX[@]}" taskset -c "$WRK_CPUS" python3 "$HERE/idle_conns.py" --proxy "$p" --port "${PORT[$p]}" \
      --conns "$IDLE_CONNS" --header "Host: ${HOSTH[$p]}" --pids ${PIDS_OF[$p]} \
      >>"$IDLE_FILE" 2>"$W/idle-$p.err" &
    CURRENT=$!
    rc=0; wait "$CURRENT" || rc=$?
    CURRENT=""
    [ $rc -eq 0 ] || log "warning: idle measurement of $p failed: $(tail -2 "$W/idle-$p.err")"
    sleep 1
  done
fi

# --- report ----------------------------------------------------------------------------------------
ver() { "$@" 2>&1 | head -1 || true; }
export META_DATE META_KERNEL META_CPU META_NGINX META_HAPROXY META_WRK META_GW META_AFF
META_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
META_KERNEL=$(uname -r)
META_CPU=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
META_NGINX=$(ver nginx -v)
META_HAPROXY=$(ver haproxy -v)
META_WRK=$(ver wrk --version)
META_GW=""
[ -x "$GATEWAY_BIN" ] && META_GW=$(ver "$GATEWAY_BIN" --version)
META_GW_DRIVER="" # what the gateway logged about its IO driver, colours stripped
if [ -f "$W/gateway/stdout.log" ]; then
  META_GW_DRIVER=$(sed 's/\x1b\[[0-9;]*m//g' "$W/gateway/stdout.log" | grep -io 'driver=.*' | head -1 || true)
fi
export META_GW_DRIVER
META_AFF=""
for p in "${ACTIVE[@]}"; do
  for pid in ${PIDS_OF[$p]}; do META_AFF+="$p:$pid:$(affinity_of "$pid");"; done
done
meta_proxies=""
for p in $PROXIES; do
  reason=${REASON[$p]:-}
  meta_proxies+="$p|${AVAIL[$p]:-0}|${LABEL[$p]//|//}|${reason//|//}|${IDLEKEY[$p]:-$p}"$'\n'
done
export META_PROXIES=$meta_proxies META_CMD="${CMD_ENV}bash benches/proxy/compare.sh" GATEWAY_ARGS
python3 - "$W/meta.json" <<PY
import json, os, sys
e = os.environ
proxies = []
for line in e["META_PROXIES"].splitlines():
    if not line:
        continue
    name, avail, label, reason, idle_key = line.split("|", 4)
    proxies.append({"name": name, "available": avail == "1", "label": label,
                    "reason": reason or None, "idle_key": idle_key})
aff = {}
for item in e["META_AFF"].split(";"):
    if item:
        name, pid, cpus = item.split(":", 2)
        aff.setdefault(name, {})[pid] = cpus
meta = {"date": e["META_DATE"], "loadavg_start": "$LOAD_START", "loadavg_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "nproc": $NPROC, "kernel": e["META_KERNEL"], "cpu": e["META_CPU"],
        "runs": $RUNS, "duration": $DURATION, "warmup": $WARMUP, "threads": $THREADS,
        "conns": $CONNS, "upstream_workers": $UPSTREAM_WORKERS, "idle_conns": None if "$SKIP_IDLE" == "1" else $IDLE_CONNS,
        "clk_tck": $CLK_TCK, "nice": $NICE,
        "cpus": {"proxy": "$PROXY_CPUS", "upstream": "$UPSTREAM_CPUS", "wrk": "$WRK_CPUS"},
        "affinity_seen": aff, "upstream_body_bytes": $body_len,
        "versions": {"nginx": e["META_NGINX"], "haproxy": e["META_HAPROXY"], "wrk": e["META_WRK"],
                     "gateway": e["META_GW"] or None},
        "command": e["META_CMD"], "gateway_args": e["GATEWAY_ARGS"] or None,
        "gateway_driver": e["META_GW_DRIVER"] or None,
        "proxies": proxies}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
PY
cp "$RUNS_FILE" "$OUT_DIR/runs.jsonl"
rm -rf "$OUT_DIR/logs" && mkdir -p "$OUT_DIR/logs"
for f in upstream/error.log nginx/error.log haproxy/stdout.log gateway/check.log gateway/stdout.log \
  gateway/tollgate.toml gateway/entities.json; do
  [ -f "$W/$f" ] && cp "$W/$f" "$OUT_DIR/logs/${f//\//-}"
done
cp "$IDLE_FILE" "$OUT_DIR/idle.jsonl"
echo
python3 "$HERE/stats.py" report --runs "$RUNS_FILE" --idle "$IDLE_FILE" --meta "$W/meta.json" --out-dir "$OUT_DIR"
echo
log "wrote $OUT_DIR/compare.json and $OUT_DIR/compare.md (raw wrk outputs in $OUT_DIR/raw)"
