#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a proxy (stdlib only; used by compare.sh).

Sums VmRSS of the given PIDs, then opens N connections to 127.0.0.1:PORT one after the other, sends
one keep-alive GET on each and reads the whole response, keeps them all open and idle, waits a
moment, checks how many the proxy still holds open, sums VmRSS again and prints one JSON line:
  {"proxy", "conns_requested", "conns_open", "rss_before_kib", "rss_after_kib", "kib_per_conn", ...}
Connections are closed with RST (SO_LINGER 0) so that no TIME_WAIT is left behind; then, after the
settle time again, "rss_after_close_kib" tells how much of the memory the proxy gave back (what it
keeps can be reused by a later measurement of the same process, which then reads low).

With --tls every connection is TLS 1.3 (Python's ssl, certificate not verified, no session reuse:
a full handshake each), and the request and response go over it; the session tickets the server
sends after the handshake are read with the response, so nothing is left unread while idle.
"""

import argparse
import json
import resource
import select
import socket
import ssl
import struct
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def client_context():
    """TLS 1.3 only, no verification (the run's own self-signed certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def read_response(s, deadline):
    """Reads one HTTP/1.1 response with a Content-Length (or a bodiless status)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
        if k.strip().lower() == b"transfer-encoding":
            raise ConnectionError("chunked response: not expected from the 13-byte upstream")
    while len(body) < length:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed during the body")
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before sampling")
    ap.add_argument("--pids", type=int, nargs="+", required=True)
    ap.add_argument("--tls", action="store_true", help="TLS 1.3 connections (not verified)")
    a = ap.parse_args()
    ctx = client_context() if a.tls else None

    def connect():
        s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is None:
            return s
        try:
            # No server_hostname: no SNI, as for a client dialling the IP address.
            return ctx.wrap_socket(s)
        except BaseException:
            s.close()
            raise

    note = []
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    conns = a.conns
    if soft < conns + 64:
        conns = soft - 64
        note.append(f"open-file limit {soft}: {conns} connections instead of {a.conns}")

    req = b"GET / HTTP/1.1\r\n" + b"".join(h.encode() + b"\r\n" for h in a.header) + b"\r\n"
    linger = struct.pack("ii", 1, 0)
    socks, errors, statuses = [], 0, {}
    first_error = None

    # Warm the path once (first request allocates per-process buffers, opens the upstream conn).
    try:
        with connect() as s:
            s.sendall(req)
            read_response(s, time.monotonic() + 5)
    except (OSError, ConnectionError, ValueError) as e:
        note.append(f"warm-up request failed: {e}")
    time.sleep(0.5)
    before = rss_kib(a.pids)

    for _ in range(conns):
        try:
            s = connect()
            s.sendall(req)
            st = read_response(s, time.monotonic() + 5)
            statuses[st] = statuses.get(st, 0) + 1
            socks.append(s)
        except (OSError, ConnectionError, ValueError) as e:
            errors += 1
            if first_error is None:
                first_error = repr(e)
            if errors > 100:
                note.append("stopped after 100 errors")
                break

    time.sleep(a.settle)
    # A readable idle socket means the proxy closed it (EOF) or sent something unexpected.
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    closed = {fd for fd, _ in poller.poll(0)}
    # Plaintext the TLS layer already holds would be a stray response, not an idle connection.
    closed |= {s.fileno() for s in socks if a.tls and s.pending()}
    open_count = len(socks) - len(closed)
    after = rss_kib(a.pids)
    for s in socks:
        s.close()
    time.sleep(a.settle)
    after_close = rss_kib(a.pids)

    res = {"proxy": a.proxy, "conns_requested": a.conns, "conns_opened": len(socks),
           "conns_open": open_count, "closed_by_proxy": len(closed), "errors": errors,
           "first_error": first_error, "statuses": {str(k): v for k, v in statuses.items()},
           "tls": a.tls, "pids": a.pids,
           "rss_before_kib": before, "rss_after_kib": after, "rss_after_close_kib": after_close,
           "kib_per_conn": (after - before) / open_count if open_count else None,
           "note": "; ".join(note) or None}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
