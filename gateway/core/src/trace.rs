//! W3C Trace Context (`traceparent`, version 00): the gateway joins the client's trace when the
//! request carries a valid `traceparent` (same trace id and flags, the gateway's own span as the
//! parent the upstream sees), and starts one when it carries none or an invalid one. The trace id
//! goes into the access log and error bodies, so a refusal can be found in a trace.
//!
//! Ids come from the caller (the shell's per-core generator): nothing here reads a clock or a
//! random source, allocates or panics.

/// A trace context: the trace id, this hop's span id and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The gateway's span (the `parent-id` the upstream receives), never all zero.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Length of a `traceparent` value: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;

impl TraceContext {
    /// The context for a request: the client's trace (from its `traceparent`, when valid)
    /// continued with `span_id`, or a new trace `new_trace_id` (sampled) when there is none.
    /// Zero ids given by the caller are replaced by 1s (they are invalid on the wire).
    #[must_use]
    pub fn for_request(
        traceparent: Option<&[u8]>,
        new_trace_id: [u8; 16],
        span_id: [u8; 8],
    ) -> Self {
        let span_id = if span_id == [0; 8] { [1; 8] } else { span_id };
        match traceparent.and_then(parse) {
            Some((trace_id, flags)) => Self {
                trace_id,
                span_id,
                flags,
            },
            None => Self {
                trace_id: if new_trace_id == [0; 16] {
                    [1; 16]
                } else {
                    new_trace_id
                },
                span_id,
                flags: 0x01,
            },
        }
    }

    /// Appends the `traceparent` value (`00-<trace>-<span>-<flags>`).
    pub fn write_traceparent(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"00-");
        push_hex(out, &self.trace_id);
        out.push(b'-');
        push_hex(out, &self.span_id);
        out.push(b'-');
        push_hex(out, &[self.flags]);
    }

    /// Appends the trace id in lower-case hex (32 characters).
    pub fn write_trace_id(&self, out: &mut Vec<u8>) {
        push_hex(out, &self.trace_id);
    }
}

/// The trace id and flags of a valid version-00 `traceparent` (a higher version is read by its
/// first four fields, as the spec asks); `None` for anything else.
fn parse(value: &[u8]) -> Option<([u8; 16], u8)> {
    let value = trim(value);
    let version = hex_byte(value.get(0..2)?)?;
    if version == 0xff || value.get(2) != Some(&b'-') {
        return None;
    }
    if version == 0 && value.len() != TRACEPARENT_LEN {
        return None;
    }
    if version != 0 && value.len() > TRACEPARENT_LEN && value.get(TRACEPARENT_LEN) != Some(&b'-') {
        return None;
    }
    let mut trace_id = [0u8; 16];
    for (i, b) in trace_id.iter_mut().enumerate() {
        *b = hex_byte(value.get(3 + 2 * i..5 + 2 * i)?)?;
    }
    if value.get(35) != Some(&b'-') || value.get(52) != Some(&b'-') {
        return None;
    }
    let mut parent = [0u8; 8];
    for (i, b) in parent.iter_mut().enumerate() {
        *b = hex_byte(value.get(36 + 2 * i..38 + 2 * i)?)?;
    }
    let flags = hex_byte(value.get(53..55)?)?;
    (trace_id != [0; 16] && parent != [0; 8]).then_some((trace_id, flags))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// Two lower-case hex digits (upper case is invalid in `traceparent`).
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    match two {
        [h, l] => Some(digit(*h)? << 4 | digit(*l)?),
        _ => None,
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Written into a stack buffer, then appended once (one capacity check, not two per byte).
    let mut hex = [0u8; 32];
    for chunk in bytes.chunks(16) {
        for (pair, b) in hex.chunks_exact_mut(2).zip(chunk) {
            if let [hi, lo] = pair {
                *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                *lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
            }
        }
        out.extend_from_slice(hex.get(..chunk.len() * 2).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn text(t: &TraceContext) -> String {
        let mut out = Vec::new();
        t.write_traceparent(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_the_gateways_span() {
        let t = TraceContext::for_request(Some(CLIENT.as_bytes()), [9; 16], [0xab; 8]);
        assert_eq!(
            text(&t),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01"
        );
        let mut id = Vec::new();
        t.write_trace_id(&mut id);
        assert_eq!(id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        // Flags are kept (not sampled stays not sampled).
        let unsampled = CLIENT.replace("-01", "-00");
        let t = TraceContext::for_request(Some(unsampled.as_bytes()), [9; 16], [1; 8]);
        assert_eq!(t.flags, 0);
    }

    #[test]
    fn an_absent_or_invalid_traceparent_starts_a_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let t = TraceContext::for_request(Some(bad.as_bytes()), [7; 16], [8; 8]);
            assert_eq!(t.trace_id, [7; 16], "{bad:?}");
            assert_eq!(t.flags, 1);
        }
        let t = TraceContext::for_request(None, [0; 16], [0; 8]);
        assert_ne!(t.trace_id, [0; 16]);
        assert_ne!(t.span_id, [0; 8]);
        // A future version is read by its first fields.
        let future = format!("{}-more", CLIENT.replacen("00", "01", 1));
        let t = TraceContext::for_request(Some(future.as_bytes()), [7; 16], [8; 8]);
        assert_ne!(t.trace_id, [7; 16]);
    }
}
