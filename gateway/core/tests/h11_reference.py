"""The reference reading of request byte streams for tests/h11_differential.rs: h11, an
independent HTTP/1.1 implementation, as a server.

Reads a JSON list of hex-encoded byte streams on stdin and writes a JSON list of outcomes,
one per stream, in order. With the argument `responses`, each item is [method, hex stream]: the
stream is an upstream's answer to that request, read as a client would, up to the upstream's
close (so an until-close body ends there, and a short one is an error); interim (1xx) answers
are skipped and the final one reported, its `target` being its reason phrase and `method` its
status. Outcomes:
  {"kind": "accept", "method", "target", "http10", "headers": [[name, value]...] (hex values,
   lowercased names), "body": hex, "trailers": [[name, value]...], "consumed": n}
  {"kind": "reject", "why": text}
  {"kind": "incomplete"}
Only the first request of a stream is read.
"""

import json
import sys

import h11


def fields(headers) -> list:
    return [[n.decode("latin-1").lower(), v.hex()] for n, v in headers.raw_items()]


def collect(conn: "h11.Connection", stream: bytes, head_kind, describe) -> dict:
    """The first message of `stream` as h11 reads it: `head_kind` is the head event's type,
    `describe(event)` its fields; interim responses are skipped."""
    out = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return {"kind": "incomplete"}
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, head_kind):
                out = {"kind": "accept", **describe(event), "headers": fields(event.headers)}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert out is not None
                out["body"] = body.hex()
                out["trailers"] = fields(event.headers)
                rest, _closed = conn.trailing_data
                out["consumed"] = len(stream) - len(rest)
                return out
            else:
                return {"kind": "reject", "why": "unexpected event %r" % (event,)}
    except h11.RemoteProtocolError as e:
        return {"kind": "reject", "why": str(e)}


def read(stream: bytes) -> dict:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16384)
    conn.receive_data(stream)
    return collect(conn, stream, h11.Request, lambda e: {
        "method": e.method.decode("latin-1"),
        "target": e.target.decode("latin-1"),
        "http10": e.http_version == b"1.0",
    })


def read_response(method: str, stream: bytes) -> dict:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(stream)
    conn.receive_data(b"")
    return collect(conn, stream, h11.Response, lambda e: {
        "method": str(e.status_code),
        "target": e.reason.decode("latin-1"),
        "http10": e.http_version == b"1.0",
    })


def main() -> None:
    items = json.load(sys.stdin)
    if sys.argv[1:] == ["responses"]:
        json.dump([read_response(m, bytes.fromhex(s)) for m, s in items], sys.stdout)
    else:
        json.dump([read(bytes.fromhex(s)) for s in items], sys.stdout)


if __name__ == "__main__":
    main()
