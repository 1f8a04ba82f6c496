//! Hop-by-hop header detection (RFC 9110 §7.6.1): what a proxy must not forward.

/// Whether `name` is hop-by-hop on its own, whatever the Connection header says: Connection,
/// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Authenticate and
/// Proxy-Authorization (ASCII case-insensitive).
#[must_use]
pub fn is_always_hop_by_hop(name: &[u8]) -> bool {
    let candidates: &[&[u8]] = match name.len() {
        2 => &[b"te"],
        7 => &[b"trailer", b"upgrade"],
        10 => &[b"connection", b"keep-alive"],
        16 => &[b"proxy-connection"],
        17 => &[b"transfer-encoding"],
        18 => &[b"proxy-authenticate"],
        19 => &[b"proxy-authorization"],
        _ => return false,
    };
    candidates.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// Whether one of the Connection field values lists `name` as a connection option.
///
/// `connection_values` are the values of every Connection field line; each is a comma-separated
/// list of tokens, compared ASCII case-insensitively after trimming optional whitespace.
pub fn connection_lists<'v, I>(connection_values: I, name: &[u8]) -> bool
where
    I: IntoIterator<Item = &'v [u8]>,
{
    connection_values
        .into_iter()
        .any(|value| list_elements(value).any(|token| token.eq_ignore_ascii_case(name)))
}

/// Whether a proxy must drop the header `name` before forwarding: it is always hop-by-hop or
/// the message's Connection header lists it.
pub fn is_hop_by_hop<'v, I>(name: &[u8], connection_values: I) -> bool
where
    I: IntoIterator<Item = &'v [u8]>,
{
    is_always_hop_by_hop(name) || connection_lists(connection_values, name)
}

/// The non-empty elements of a comma-separated field value, with optional whitespace trimmed.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|element| !element.is_empty())
}

/// `value` without leading and trailing spaces and tabs.
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}
