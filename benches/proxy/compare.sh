#!/usr/bin/env bash
# Proxy comparison: nginx (proxy_pass, upstream keepalive), HAProxy (http-reuse always) and the
# Tollgate gateway (public route, keyed route with ApikeyCalls, and the route of a published API
# with an apikey consumer called with its subscription's issued key), each on one core, in front of
# the same upstream (nginx `return 200`, 13-byte body) under the same wrk load. The HTTPS rows
# (nginx-tls: nginx `listen … ssl`; gateway-tls: the same gateway process's [listeners.https]) serve
# TLS 1.3 with one ECDSA P-256 certificate made with openssl in the temp dir, and are measured
# against nginx-tls.
#
# For each proxy: requests/s and p50/p99 from wrk --latency; user and system CPU µs per request from
# /proc/PID/stat of the proxy's serving process(es) before and after each run; RSS per idle
# keep-alive connection (10,000 idle connections; over TLS for the -tls rows). Runs alternate
# between proxies (A B C A B C …). With HANDSHAKES=1, the TLS proxies also take sequential
# `openssl s_time` runs (new connection, full handshake, one request, close; then the same with
# resumption from a TLS 1.3 ticket, `-reuse`): connections/s and the proxy's CPU µs per connection.
# Prints a table (median, min–max) and writes $OUT_DIR/compare.json and $OUT_DIR/compare.md (raw
# wrk outputs in $OUT_DIR/raw, the proxies' logs and the gateway's config in $OUT_DIR/logs).
#
# Usage:  bash benches/proxy/compare.sh            (from the repo root; see docs/benchmarks.md)
# Environment (defaults in brackets):
#   RUNS [3]  DURATION [10] (s per run)  WARMUP [3] (s per proxy, unmeasured)
#   THREADS [1] CONNS [50] (wrk -t -c)  UPSTREAM_WORKERS [1] (nginx workers of the upstream)
#   PROXIES ["nginx haproxy gateway gateway-keyed"]; also gateway-consumer (an API's apikey
#     consumer), gateway-jwt (an API's jwt consumer: one RS256 token minted by PyJWT, so every
#     request after the first is a per-core cache hit), gateway-oauth (an API's oauth consumer:
#     the API and its subscription made through the admin API, one ES256 access token from the
#     token endpoint), nginx-tls and gateway-tls (HTTPS), e.g. PROXIES="nginx nginx-tls gateway gateway-tls"
#   HANDSHAKES [0] (1: s_time runs, full and resumed, against the TLS proxies; RUNS rounds)
#   HS_DURATION [10] (s per s_time run)
#   GATEWAY_BIN [target/release/gateway]  GATEWAY_ARGS [] (extra arguments, e.g. "--io epoll")
#   GATEWAY_LEDGER [embedded] ("remote": no in-process ledger; usage still journaled)
#   GATEWAY_ACCESS_LOG [0] (1: the gateway writes its access log, every request, to its data dir;
#     a number in 0..1: that sample)
#   PROXY_CPUS / UPSTREAM_CPUS / WRK_CPUS  taskset core lists [2 cores: 0 / 1 / 1; ≥3 cores: 0 / 1 / 2]
#   IDLE_CONNS [10000]  SKIP_IDLE [0] (1: skip the idle-connection memory part)
#   UPSTREAM_PORT [18081]  NGINX_PORT [18082]  HAPROXY_PORT [18083]
#   GATEWAY_PORT [18084]  GATEWAY_ADMIN_PORT [18085]  GATEWAY_LEDGER_PORT [18086]
#   NGINX_TLS_PORT [18087]  GATEWAY_TLS_PORT [18088]
#   NICE [0] (e.g. -10: run every benchmark process at that priority, on a shared machine; root)
#   OUT_DIR [target/bench-proxy]  KEEP_TMP [0] (1: keep the temp dir with configs and logs)
# Needs nginx, haproxy, wrk, curl, python3, taskset (and openssl for the TLS rows); installs the
# missing ones with apt-get (without starting their services). Never touches the system's
# nginx/haproxy configs or services: everything runs from a temp dir (the TLS key too, made there and
# removed with it), in the foreground of this script, on 127.0.0.1, and is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
case ${1:-} in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "compare.sh takes no arguments (settings are environment variables; see --help)" >&2; exit 2 ;;
esac
REPO=$(cd "$HERE/../.." && pwd)
SETTINGS="RUNS DURATION WARMUP THREADS CONNS UPSTREAM_WORKERS PROXIES GATEWAY_BIN GATEWAY_ARGS IDLE_CONNS
  SKIP_IDLE PROXY_CPUS UPSTREAM_CPUS WRK_CPUS NICE GATEWAY_LEDGER GATEWAY_ACCESS_LOG HANDSHAKES HS_DURATION"
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
GATEWAY_ACCESS_LOG=${GATEWAY_ACCESS_LOG:-0}
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
NGINX_TLS_PORT=${NGINX_TLS_PORT:-18087}
GATEWAY_TLS_PORT=${GATEWAY_TLS_PORT:-18088}
HANDSHAKES=${HANDSHAKES:-0}
HS_DURATION=${HS_DURATION:-10}
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
JWT_HOST=jwt.tollgate.local
OAUTH_HOST=oauth.tollgate.local
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
[[ $HANDSHAKES =~ ^[01]$ ]] || die "HANDSHAKES must be 0 or 1"
[[ $GATEWAY_ACCESS_LOG =~ ^(0|1|0?\.[0-9]+)$ ]] || die "GATEWAY_ACCESS_LOG must be 0, 1 or a sample in 0..1"
[[ $HS_DURATION =~ ^[1-9][0-9]*$ ]] || die "HS_DURATION must be a positive integer (seconds)"
PFX=() # prefix of every benchmark process (upstream, proxies, wrk, idle client)
[ "$NICE" != 0 ] && PFX=(nice -n "$NICE")

# --- tools -----------------------------------------------------------------------------------------
install_missing() {
  local pkgs=() b
  local want=(nginx haproxy wrk curl python3 taskset)
  [[ " $PROXIES " == *-tls\ * ]] && want+=(openssl)
  for b in "${want[@]}"; do
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

# wait_http PID URL HOST [curl args…]: until the URL answers 200 (0), the process dies (2), or
# timeout (1). An https URL is not verified (the certificate is the run's own, self-signed).
wait_http() {
  local pid=$1 url=$2 host=$3; shift 3
  local deadline=$((SECONDS + START_TIMEOUT)) code
  [[ $url == https:* ]] && set -- -k "$@"
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 2
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -H "Host: $host" "$@" "$url" || true)
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

nginx_conf() { # dir listen-port body-of-http-block [workers [listen-flags [server-directives]]]
  local d=$1 port=$2 body=$3 workers=${4:-1} listen_flags=${5:-} server_extra=${6:-} affinity=""
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
    listen 127.0.0.1:$port${listen_flags:+ $listen_flags} backlog=4096;
$server_extra
    location / { $(if [ "$port" = "$UPSTREAM_PORT" ]; then echo 'default_type text/plain; return 200 "hello, world!";'; else echo 'proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";'; fi) }
  }
}
EOF
}

# start_nginx NAME DIR PORT CPUS [SCHEME]: sets NGINX_MASTER and NGINX_WORKERS.
start_nginx() {
  local name=$1 d=$2 port=$3 cpus=$4 scheme=${5:-http}
  "${PFX[@]}" taskset -c "$cpus" nginx -q -e "$d/error.log" -p "$d" -c "$d/nginx.conf" >"$d/stdout.log" 2>&1 &
  NGINX_MASTER=$!
  PIDS+=("$NGINX_MASTER")
  local rc=0
  wait_http "$NGINX_MASTER" "$scheme://127.0.0.1:$port/" "$PUBLIC_HOST" || rc=$?
  [ $rc -eq 0 ] || die "$name (nginx) did not answer on 127.0.0.1:$port: $(tail -3 "$d/error.log" "$d/stdout.log" 2>/dev/null | tr '\n' ' ')"
  NGINX_WORKERS=$(children_of "$NGINX_MASTER")
  [ -n "$NGINX_WORKERS" ] || die "$name: no nginx worker process"
  local w
  for w in $NGINX_WORKERS; do PIDS+=("$w"); done
}

# --- proxies ---------------------------------------------------------------------------------------
declare -A PORT SCHEME HOSTH EXTRA PIDS_OF AVAIL REASON LABEL IDLEKEY
for p in $PROXIES; do
  case $p in
    nginx|haproxy|gateway|gateway-keyed|gateway-consumer|gateway-jwt|gateway-oauth|nginx-tls|gateway-tls) ;;
    *) die "unknown proxy '$p' in PROXIES (nginx haproxy gateway gateway-keyed gateway-consumer gateway-jwt gateway-oauth nginx-tls gateway-tls)" ;;
  esac
  SCHEME[$p]=http
  [[ $p == *-tls ]] && SCHEME[$p]=https
done
wants() { [[ " $PROXIES " == *" $1 "* ]]; }
is_tls() { [ "${SCHEME[$1]}" = https ]; }
TLS_WANTED=0
wants nginx-tls || wants gateway-tls && TLS_WANTED=1
[ "$HANDSHAKES" = 1 ] && [ $TLS_WANTED = 0 ] && log "warning: HANDSHAKES=1 but no TLS proxy in PROXIES: no handshake runs"

check_port_free "$UPSTREAM_PORT" upstream UPSTREAM_PORT
wants nginx && check_port_free "$NGINX_PORT" "nginx proxy" NGINX_PORT
wants nginx-tls && check_port_free "$NGINX_TLS_PORT" "nginx TLS proxy" NGINX_TLS_PORT
wants haproxy && check_port_free "$HAPROXY_PORT" haproxy HAPROXY_PORT
WANTS_GW=0
wants gateway || wants gateway-keyed || wants gateway-consumer || wants gateway-jwt || wants gateway-oauth || wants gateway-tls && WANTS_GW=1
if [ $WANTS_GW = 1 ]; then
  check_port_free "$GATEWAY_PORT" gateway GATEWAY_PORT
  check_port_free "$GATEWAY_ADMIN_PORT" "gateway admin" GATEWAY_ADMIN_PORT
  check_port_free "$GATEWAY_LEDGER_PORT" "gateway ledger" GATEWAY_LEDGER_PORT
  wants gateway-tls && check_port_free "$GATEWAY_TLS_PORT" "gateway HTTPS" GATEWAY_TLS_PORT
fi

W=$(mktemp -d /tmp/tollgate-compare.XXXXXX)
log "cores: $NPROC; proxy on $PROXY_CPUS, upstream on $UPSTREAM_CPUS, wrk on $WRK_CPUS; open files $NOFILE"
log "temp dir $W"

# One certificate for every TLS proxy: ECDSA P-256, self-signed, made here and never kept (the temp
# dir is removed on exit; KEEP_TMP=1 keeps it, key included).
if [ $TLS_WANTED = 1 ]; then
  mkdir -p "$W/tls"
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" -subj "/CN=$PUBLIC_HOST" \
    -addext "subjectAltName=DNS:$PUBLIC_HOST,DNS:$KEYED_HOST,IP:127.0.0.1" >"$W/tls/openssl.log" 2>&1) ||
    die "openssl could not make the test certificate: $(tail -3 "$W/tls/openssl.log" | tr '\n' ' ')"
  log "TLS certificate: $(openssl x509 -in "$W/tls/cert.pem" -noout -text | grep -m1 -o 'ASN1 OID: .*\|NIST CURVE: .*' || echo '?')"
fi

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

if wants nginx-tls; then
  # A production nginx's TLS settings (Mozilla's "modern" profile: TLS 1.3 only), with nginx's
  # default session tickets on and a shared session cache: a TLS 1.3 client resumes from a ticket.
  nginx_conf "$W/nginx-tls" "$NGINX_TLS_PORT" \
    "  upstream be { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; keepalive_requests 100000000; keepalive_timeout 300s; }" \
    1 ssl "    ssl_certificate $W/tls/cert.pem;
    ssl_certificate_key $W/tls/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1d;
    ssl_session_tickets on;"
  start_nginx "nginx TLS proxy" "$W/nginx-tls" "$NGINX_TLS_PORT" "$PROXY_CPUS" https
  PORT[nginx-tls]=$NGINX_TLS_PORT; PIDS_OF[nginx-tls]=$NGINX_WORKERS; AVAIL[nginx-tls]=1
  LABEL[nginx-tls]="nginx TLS 1.3 (ssl, proxy_pass, keepalive 64)"
  log "nginx TLS proxy up (worker $NGINX_WORKERS)"
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
  rc=0; wait_http "$HA" "http://127.0.0.1:$HAPROXY_PORT/" "$PUBLIC_HOST" || rc=$?
  [ $rc -eq 0 ] || die "haproxy did not answer on 127.0.0.1:$HAPROXY_PORT: $(tail -5 "$W/haproxy/stdout.log" | tr '\n' ' ')"
  PORT[haproxy]=$HAPROXY_PORT; PIDS_OF[haproxy]=$HA; AVAIL[haproxy]=1
  LABEL[haproxy]="HAProxy (http-reuse always)"
  log "haproxy up (pid $HA)"
fi

GW_PID=""
# launch_gateway LOG: starts the gateway on $W/gateway/tollgate.toml; sets GW_PID, or clears it and
# sets gw_reason.
launch_gateway() {
  local log=$1 rc=0 grc=0
  # shellcheck disable=SC2086
  (cd "$W/gateway" && exec "${PFX[@]}" taskset -c "$PROXY_CPUS" "$GATEWAY_BIN" --config "$W/gateway/tollgate.toml" $GATEWAY_ARGS) \
    >"$log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_http "$GW_PID" "http://127.0.0.1:$GATEWAY_PORT/" "$PUBLIC_HOST" || rc=$?
  if [ $rc -eq 2 ]; then
    wait "$GW_PID" || grc=$?
    gw_reason="exited at start with code $grc: $(head -c 200 "$log" | tr '\n' ' ')"
    GW_PID=""
  elif [ $rc -ne 0 ]; then
    gw_reason="no 200 from 127.0.0.1:$GATEWAY_PORT (Host $PUBLIC_HOST) within ${START_TIMEOUT}s"
    kill -TERM "$GW_PID" 2>/dev/null || true
    GW_PID=""
  fi
}
if [ $WANTS_GW = 1 ]; then
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
$(wants gateway-tls && printf '\n[listeners.https]\naddr = "127.0.0.1:%s"\ncert = "%s"\nkey = "%s"\nmin_version = "1.3"\n' \
  "$GATEWAY_TLS_PORT" "$W/tls/cert.pem" "$W/tls/key.pem")

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
$([ "$GATEWAY_ACCESS_LOG" != 0 ] && printf '\n[access_log]\nenabled = true\nsample = %s\nmax_bytes = 1073741824\nkeep = 1\n' "$(python3 -c "print(float('$GATEWAY_ACCESS_LOG'))")")

[seed]
entities = "entities.json"
EOF
  # gateway-jwt: an identity provider's RSA key (openssl) and one RS256 token (PyJWT), valid
  # for a day; the API `bench-jwt` verifies it with the PEM public key.
  JWT_API=""
  if wants gateway-jwt; then
    mkdir -p "$W/jwt"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$W/jwt/idp.key" 2>/dev/null
    JWT_PEM_JSON=$(openssl pkey -in "$W/jwt/idp.key" -pubout | python3 -c 'import json, sys; print(json.dumps(sys.stdin.read()))')
    JWT_TOKEN=$(python3 -c 'import jwt, sys, time
now = int(time.time())
print(jwt.encode({"sub": "bench-jwt-subscription", "iss": "https://idp.bench", "aud": "bench",
                  "iat": now, "nbf": now, "exp": now + 86400}, open(sys.argv[1]).read(), algorithm="RS256"))' "$W/jwt/idp.key") \
      || die "gateway-jwt needs python3-jwt and python3-cryptography"
    JWT_API=$(cat <<JWTEOF
,
    {
      "id": "bench-jwt",
      "name": "bench jwt API",
      "state": "published",
      "routes": [
        { "id": "route_jwt", "frontend": { "domains": ["$JWT_HOST"], "strip_path": true }, "backend": "backend_bench" }
      ],
      "consumers": [
        { "id": "bench-jwt-consumer", "kind": "jwt", "status": "published",
          "config": { "verifier": { "alg": "RS256", "public_key": $JWT_PEM_JSON }, "issuer": "https://idp.bench", "audience": "bench" },
          "throttlingQuota": 1000000000000, "dailyQuota": 1000000000000, "monthlyQuota": 1000000000000 }
      ],
      "subscriptions": [
        { "id": "bench-jwt-subscription", "consumer_ref": "bench-jwt-consumer", "status": "enabled" }
      ]
    }
JWTEOF
)
  fi
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
    }$JWT_API
  ]
}
EOF
  if [ ! -x "$GATEWAY_BIN" ]; then
    gw_reason="no binary at $GATEWAY_BIN; build it with cargo build --release -p gateway"
  elif ! "$GATEWAY_BIN" check --config "$W/gateway/tollgate.toml" >"$W/gateway/check.log" 2>&1; then
    gw_reason="config rejected by gateway check: $(head -c 300 "$W/gateway/check.log" | tr '\n' ' ')"
  else
    launch_gateway "$W/gateway/stdout.log"
  fi
  gw_note="${GATEWAY_ARGS}"
  [ "$GATEWAY_ACCESS_LOG" != 0 ] && gw_note+="${gw_note:+, }access log sample $GATEWAY_ACCESS_LOG"
  LABEL[gateway]="Tollgate gateway, public route${gw_note:+ ($gw_note)}"
  LABEL[gateway-keyed]="Tollgate gateway, keyed route${gw_note:+ ($gw_note)}"
  LABEL[gateway-tls]="Tollgate gateway, HTTPS listener, public route${gw_note:+ ($gw_note)}"
  LABEL[gateway-consumer]="Tollgate gateway, API apikey consumer${gw_note:+ ($gw_note)}"
  LABEL[gateway-jwt]="Tollgate gateway, API jwt consumer, RS256 token (cache warm)${gw_note:+ ($gw_note)}"
  LABEL[gateway-oauth]="Tollgate gateway, API oauth consumer, ES256 access token${gw_note:+ ($gw_note)}"
  PORT[gateway-tls]=$GATEWAY_TLS_PORT
  for g in gateway gateway-keyed gateway-consumer gateway-jwt gateway-oauth gateway-tls; do
    wants $g || continue
    if [ -n "$GW_PID" ]; then
      [ $g = gateway-tls ] || PORT[$g]=$GATEWAY_PORT
      PIDS_OF[$g]=$GW_PID; AVAIL[$g]=1
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
  if [ -n "$GW_PID" ] && wants gateway-tls; then
    rc=0; wait_http "$GW_PID" "https://127.0.0.1:$GATEWAY_TLS_PORT/" "$PUBLIC_HOST" || rc=$?
    if [ $rc -ne 0 ]; then
      AVAIL[gateway-tls]=0
      REASON[gateway-tls]="no 200 from https://127.0.0.1:$GATEWAY_TLS_PORT/ (Host $PUBLIC_HOST) within ${START_TIMEOUT}s"
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
  if [ -n "$GW_PID" ] && wants gateway-jwt; then
    code=$(curl -s -o "$W/gateway/jwt-probe.txt" -w '%{http_code}' --max-time 2 -H "Host: $JWT_HOST" \
      -H "Authorization: Bearer $JWT_TOKEN" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    anon=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: $JWT_HOST" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    if [ "$code" != 200 ] || [ "$anon" != 401 ]; then
      AVAIL[gateway-jwt]=0
      REASON[gateway-jwt]="jwt route answered $code with the token, $anon without: $(head -c 200 "$W/gateway/jwt-probe.txt" | tr '\n' ' ')"
    fi
  fi
  if [ -n "$GW_PID" ] && wants gateway-oauth; then
    # The API, its oauth consumer and a subscription through the admin API (which makes the
    # cluster's token key), then one access token from the token endpoint.
    OAUTH_TOKEN=$(python3 - "$GATEWAY_ADMIN_PORT" "$GATEWAY_PORT" "$OAUTH_HOST" <<'PYEOF' 2>"$W/gateway/oauth-setup.log" || true
import sys, time, requests
admin, port, host = sys.argv[1:4]
adm = "http://127.0.0.1:" + admin
A = {"Authorization": "Bearer bench-admin-token-0123456789"}
def ok(r):
    if r.status_code >= 300:
        raise SystemExit(f"{r.request.method} {r.url}: {r.status_code} {r.text}")
    return r
big = 10 ** 12
ok(requests.post(adm + "/api/apis", headers=A, json={"id": "bench-oauth", "name": "bench oauth API",
   "routes": [{"id": "route_oauth", "frontend": {"domains": [host], "strip_path": True}, "backend": "backend_bench"}]}))
ok(requests.post(adm + "/api/apis/bench-oauth/consumers", headers=A, json={"id": "bench-oauth-consumer", "kind": "oauth",
   "throttlingQuota": big, "dailyQuota": big, "monthlyQuota": big, "config": {"token_ttl_s": 86400}}))
ok(requests.patch(adm + "/api/apis/bench-oauth", headers=A, json={"state": "published"}))
c = ok(requests.post(adm + "/api/apis/bench-oauth/subscriptions", headers=A,
   json={"id": "bench-oauth-subscription", "consumer_ref": "bench-oauth-consumer"})).json()["credentials"]
for _ in range(200):
    r = requests.post("http://127.0.0.1:" + port + "/.well-known/otoroshi/oauth/token", headers={"Host": host},
                      data={"grant_type": "client_credentials"}, auth=(c["clientId"], c["clientSecret"]))
    if r.status_code == 200:
        print(r.json()["access_token"])
        break
    time.sleep(0.05)
PYEOF
)
    code=$(curl -s -o "$W/gateway/oauth-probe.txt" -w '%{http_code}' --max-time 2 -H "Host: $OAUTH_HOST" \
      -H "Authorization: Bearer $OAUTH_TOKEN" "http://127.0.0.1:$GATEWAY_PORT/" || true)
    if [ -z "$OAUTH_TOKEN" ] || [ "$code" != 200 ]; then
      AVAIL[gateway-oauth]=0
      REASON[gateway-oauth]="no access token or the oauth route answered $code: $(head -c 200 "$W/gateway/oauth-setup.log" "$W/gateway/oauth-probe.txt" | tr '\n' ' ')"
    fi
  fi
  if [ -n "$GW_PID" ]; then
    log "gateway up (pid $GW_PID)"
  else
    log "gateway not available: $gw_reason"
  fi
fi
HOSTH[nginx]=$PUBLIC_HOST; HOSTH[haproxy]=$PUBLIC_HOST; HOSTH[gateway]=$PUBLIC_HOST
HOSTH[nginx-tls]=$PUBLIC_HOST; HOSTH[gateway-tls]=$PUBLIC_HOST
HOSTH[gateway-keyed]=$KEYED_HOST
EXTRA[gateway-keyed]="Otoroshi-Client-Id: $KEY_ID|Otoroshi-Client-Secret: $KEY_SECRET"
IDLEKEY[gateway-keyed]=gateway
HOSTH[gateway-consumer]=$CONSUMER_HOST
EXTRA[gateway-consumer]="Otoroshi-Client-Id: $SUB_KEY_ID|Otoroshi-Client-Secret: $SUB_KEY_SECRET"
IDLEKEY[gateway-consumer]=gateway
HOSTH[gateway-jwt]=$JWT_HOST
EXTRA[gateway-jwt]="Authorization: Bearer ${JWT_TOKEN:-}"
IDLEKEY[gateway-jwt]=gateway
HOSTH[gateway-oauth]=$OAUTH_HOST
EXTRA[gateway-oauth]="Authorization: Bearer ${OAUTH_TOKEN:-}"
IDLEKEY[gateway-oauth]=gateway

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
    "${SCHEME[$p]}://127.0.0.1:${PORT[$p]}/" >"$outfile" 2>&1 &
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

# --- TLS handshakes per connection ---------------------------------------------------------------
# openssl s_time is a sequential client: connect, handshake, one request, read to the close, close;
# `-new` does a full handshake every time, `-reuse` resumes from the session of a first (untimed)
# connection (a TLS 1.3 ticket). It sends "GET <path> HTTP/1.0\r\n\r\n": the path below carries
# the request line's end and the headers, so that every proxy gets the same HTTP/1.1 request for
# the public route, with Connection: close (the proxy closes after the response). CPU per
# connection is the proxy's ticks over the run divided by the connections s_time completed; the
# rate is those connections over the run's wall time (s_time's own "connections/user sec" is the
# client's CPU, not the proxy's).
HS_FILE=$W/handshakes.jsonl
: >"$HS_FILE"
HS_PATH=$'/ HTTP/1.1\r\nHost: '"$PUBLIC_HOST"$'\r\nConnection: close\r\nUser-Agent: openssl-s_time'
HS_ACTIVE=()
for p in "${ACTIVE[@]}"; do is_tls "$p" && HS_ACTIVE+=("$p"); done
declare -A HS_PROBE TLS_SEEN
for p in "${HS_ACTIVE[@]}"; do
  # What was negotiated (protocol, cipher, key exchange, signature) and what the s_time request
  # gets, once per proxy, with the same client.
  TLS_SEEN[$p]=$(openssl s_client -connect "127.0.0.1:${PORT[$p]}" -brief </dev/null 2>&1 |
    grep -E '^(Protocol version|Ciphersuite|Signature type|Hash used|Server Temp Key)' | paste -sd';' - | sed 's/;/; /g' || true)
  HS_PROBE[$p]=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$HS_PATH" |
    timeout 5 openssl s_client -connect "127.0.0.1:${PORT[$p]}" -quiet -ign_eof 2>/dev/null | head -1 | tr -d '\r' || true)
  log "TLS $p: ${TLS_SEEN[$p]:-?}; s_time request answered: ${HS_PROBE[$p]:-nothing}"
done
# run_s_time PROXY MODE(new|reuse) OUTFILE: the s_time run, pinned with the load generator.
run_s_time() {
  local p=$1 mode=$2 outfile=$3
  "${PFX[@]}" taskset -c "$WRK_CPUS" openssl s_time -connect "127.0.0.1:${PORT[$p]}" "-$mode" \
    -time "$HS_DURATION" -www "$HS_PATH" >"$outfile" 2>&1 &
  CURRENT=$!
  local rc=0
  wait "$CURRENT" || rc=$?
  CURRENT=""
  return $rc
}
if [ "$HANDSHAKES" = 1 ] && [ ${#HS_ACTIVE[@]} -gt 0 ]; then
  for r in $(seq "$RUNS"); do
    for mode in new reuse; do
      for p in "${HS_ACTIVE[@]}"; do
        f=$OUT_DIR/raw/s_time-$mode-$p-$r.txt
        # shellcheck disable=SC2086
        c0=$(cpu_ticks ${PIDS_OF[$p]}) || die "$p died before handshake round $r (logs in $W)"
        k0=$(core_ticks "$PROXY_CORES")
        t0=$EPOCHREALTIME
        run_s_time "$p" "$mode" "$f" || log "warning: s_time -$mode against $p exited with an error: $(tail -2 "$f" | tr '\n' ' ')"
        t1=$EPOCHREALTIME
        k1=$(core_ticks "$PROXY_CORES")
        # shellcheck disable=SC2086
        c1=$(cpu_ticks ${PIDS_OF[$p]}) || die "$p died during handshake round $r (logs in $W)"
        python3 "$HERE/stats.py" hs-record --proxy "$p" --mode "$mode" --round "$r" --s-time "$f" \
          --seconds "$(python3 -c "print($t1 - $t0)")" --clk-tck "$CLK_TCK" \
          --cpu0 "$c0" --cpu1 "$c1" --core0 "$k0" --core1 "$k1" >>"$HS_FILE"
        log "handshakes round $r/$RUNS -$mode $p: $(tail -1 "$HS_FILE" | python3 "$HERE/stats.py" brief)"
        sleep 1
      done
    done
  done
fi

# --- idle keep-alive memory ------------------------------------------------------------------------
IDLE_FILE=$W/idle.jsonl
: >"$IDLE_FILE"
MEASURED_PIDS=" "
if [ "$SKIP_IDLE" != 1 ]; then
  for p in "${ACTIVE[@]}"; do
    [ "$p" = gateway-keyed ] || [ "$p" = gateway-consumer ] || [ "$p" = gateway-jwt ] || [ "$p" = gateway-oauth ] && continue # same process as the public route: measured once
    if [[ $MEASURED_PIDS == *" ${PIDS_OF[$p]} "* ]] && [ "${PIDS_OF[$p]}" = "$GW_PID" ]; then
      # The gateway serves both gateway and gateway-tls. Memory the first measurement's
      # connections freed stays in the process (glibc keeps it) and would be reused by the second,
      # which would then read low: measure it on a fresh process with the same config.
      log "restarting the gateway (pid $GW_PID) for a fresh idle measurement of $p"
      kill -TERM "$GW_PID" 2>/dev/null || true
      wait "$GW_PID" 2>/dev/null || true
      gw_reason=""
      launch_gateway "$W/gateway/stdout-restart-$p.log"
      if [ -n "$GW_PID" ] && is_tls "$p"; then
        wait_http "$GW_PID" "https://127.0.0.1:${PORT[$p]}/" "$PUBLIC_HOST" ||
          gw_reason="no 200 from https://127.0.0.1:${PORT[$p]}/ after the restart"
      fi
      if [ -z "$GW_PID" ] || [ -n "$gw_reason" ]; then
        log "warning: idle measurement of $p skipped: the gateway did not restart: $gw_reason"
        continue
      fi
      for g in gateway gateway-keyed gateway-consumer gateway-jwt gateway-oauth gateway-tls; do [ -n "${PIDS_OF[$g]:-}" ] && PIDS_OF[$g]=$GW_PID; done
    fi
    MEASURED_PIDS+="${PIDS_OF[$p]} "
    tls_flag=()
    is_tls "$p" && tls_flag=(--tls)
    log "idle memory $p: $IDLE_CONNS keep-alive connections${tls_flag:+ over TLS}"
    # shellcheck disable=SC2086
    "${PFX[@]}" taskset -c "$WRK_CPUS" python3 "$HERE/idle_conns.py" --proxy "$p" --port "${PORT[$p]}" "${tls_flag[@]}" \
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
META_OPENSSL=""
[ $TLS_WANTED = 1 ] && META_OPENSSL=$(ver openssl version)
META_TLS=""
for p in "${HS_ACTIVE[@]}"; do META_TLS+="$p|${TLS_SEEN[$p]//|/}|${HS_PROBE[$p]//|/}"$'\n'; done
export META_OPENSSL META_TLS
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
tls = {}
for line in e["META_TLS"].splitlines():
    if line:
        name, seen, probe = line.split("|", 2)
        tls[name] = {"negotiated": seen or None, "s_time_request_answer": probe or None}
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
                     "gateway": e["META_GW"] or None, "openssl": e["META_OPENSSL"] or None},
        "command": e["META_CMD"], "gateway_args": e["GATEWAY_ARGS"] or None,
        "gateway_driver": e["META_GW_DRIVER"] or None,
        "tls": {"certificate": "ECDSA P-256, self-signed (openssl req -x509)", "versions": "TLS 1.3 only",
                "proxies": tls} if tls else None,
        "handshakes": {"duration": $HS_DURATION, "runs": $RUNS} if "$HANDSHAKES" == "1" and tls else None,
        "proxies": proxies}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
PY
cp "$RUNS_FILE" "$OUT_DIR/runs.jsonl"
rm -rf "$OUT_DIR/logs" && mkdir -p "$OUT_DIR/logs"
for f in upstream/error.log nginx/error.log nginx-tls/error.log nginx-tls/nginx.conf haproxy/stdout.log \
  gateway/check.log gateway/stdout.log gateway/tollgate.toml gateway/entities.json; do
  [ -f "$W/$f" ] && cp "$W/$f" "$OUT_DIR/logs/${f//\//-}"
done
cp "$IDLE_FILE" "$OUT_DIR/idle.jsonl"
cp "$HS_FILE" "$OUT_DIR/handshakes.jsonl"
echo
python3 "$HERE/stats.py" report --runs "$RUNS_FILE" --idle "$IDLE_FILE" --handshakes "$HS_FILE" \
  --meta "$W/meta.json" --out-dir "$OUT_DIR"
echo
log "wrote $OUT_DIR/compare.json and $OUT_DIR/compare.md (raw wrk outputs in $OUT_DIR/raw)"
