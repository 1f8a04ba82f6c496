//! Borrowed views of parsed header fields.

use std::ops::Range;

use super::hop;

/// Where one header field lies in the parsed buffer (kept by the parser between messages so a
/// parse allocates nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeaderSpan {
    name_start: u32,
    name_end: u32,
    value_start: u32,
    value_end: u32,
}

impl HeaderSpan {
    /// The span of `name` and `value`, both subslices of the first `u32::MAX` bytes of `buf`
    /// (heads are limited far below that).
    pub(crate) fn locate(buf: &[u8], name: &[u8], value: &[u8]) -> Self {
        let name = offsets(buf, name);
        let value = offsets(buf, value);
        Self {
            name_start: name.start,
            name_end: name.end,
            value_start: value.start,
            value_end: value.end,
        }
    }

    /// The field name's bytes.
    fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(range(self.name_start, self.name_end))
            .unwrap_or_default()
    }

    /// The field value's bytes.
    fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(range(self.value_start, self.value_end))
            .unwrap_or_default()
    }

    fn resolve<'a>(&self, buf: &'a [u8]) -> Header<'a> {
        let name = buf
            .get(range(self.name_start, self.name_end))
            .unwrap_or_default();
        Header {
            // Header names are tokens (checked by httparse), hence ASCII.
            name: std::str::from_utf8(name).unwrap_or_default(),
            value: buf
                .get(range(self.value_start, self.value_end))
                .unwrap_or_default(),
        }
    }
}

/// Offsets of `part` within `buf`; `part` must be a subslice of `buf`. An offset that does not
/// fit yields an empty span rather than a wrong one.
fn offsets(buf: &[u8], part: &[u8]) -> Range<u32> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    let end = start.wrapping_add(part.len());
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) => start..end,
        _ => 0..0,
    }
}

fn range(start: u32, end: u32) -> Range<usize> {
    // u32 always fits in usize on the targets we build for (64-bit).
    start as usize..end as usize
}

/// One header field line, borrowed from the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The field name as sent (a token; compare it ASCII case-insensitively).
    pub name: &'a str,
    /// The field value with surrounding whitespace removed; may hold obs-text bytes.
    pub value: &'a [u8],
}

/// The header fields of a parsed head, in the order received.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    buf: &'a [u8],
    spans: &'a [HeaderSpan],
    /// Whether a Connection field is present: without one, only the fixed list is hop-by-hop.
    has_connection: bool,
}

impl<'a> Headers<'a> {
    pub(crate) fn new(buf: &'a [u8], spans: &'a [HeaderSpan], has_connection: bool) -> Self {
        Self {
            buf,
            spans,
            has_connection,
        }
    }

    /// Number of field lines.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no field lines.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// All field lines, in order.
    #[must_use]
    pub fn iter(&self) -> HeadersIter<'a> {
        HeadersIter {
            buf: self.buf,
            spans: self.spans.iter(),
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    /// The values of every field named `name` (ASCII case-insensitive), in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        // Compared as bytes: a field that does not match is never resolved into a `Header`.
        let buf = self.buf;
        self.spans
            .iter()
            .filter(move |span| span.name(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(move |span| span.value(buf))
    }

    /// Whether a proxy must remove the field `name` before forwarding this message: it is always
    /// hop-by-hop (see [`hop::is_always_hop_by_hop`]) or this message's Connection header lists it.
    #[must_use]
    pub fn is_hop_by_hop(&self, name: &str) -> bool {
        let name = name.as_bytes();
        hop::is_always_hop_by_hop(name)
            || (self.has_connection && hop::connection_lists(self.get_all("connection"), name))
    }

    /// The fields a proxy forwards: every field that is not hop-by-hop for this message.
    ///
    /// The Connection header is read once: when it lists only options that are hop-by-hop anyway
    /// (`keep-alive`, `upgrade`, `te`…, the usual case), no field needs it checked again.
    pub fn end_to_end(&self) -> impl Iterator<Item = Header<'a>> + use<'a> {
        let buf = self.buf;
        self.end_to_end_spans().map(move |span| span.resolve(buf))
    }

    /// [`Headers::end_to_end`] as raw (name, value) bytes: what a proxy copies, without turning
    /// each name into a `&str`.
    pub fn end_to_end_fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let buf = self.buf;
        self.end_to_end_spans()
            .map(move |span| (span.name(buf), span.value(buf)))
    }

    fn end_to_end_spans(&self) -> impl Iterator<Item = &'a HeaderSpan> + use<'a> {
        let this = *self;
        let buf = self.buf;
        let lists_others = self.has_connection
            && self.get_all("connection").any(|value| {
                hop::list_elements(value).any(|token| !hop::is_always_hop_by_hop(token))
            });
        self.spans.iter().filter(move |span| {
            let name = span.name(buf);
            !(hop::is_always_hop_by_hop(name)
                || (lists_others && hop::connection_lists(this.get_all("connection"), name)))
        })
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeadersIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over the field lines of [`Headers`].
#[derive(Debug, Clone)]
pub struct HeadersIter<'a> {
    buf: &'a [u8],
    spans: std::slice::Iter<'a, HeaderSpan>,
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        self.spans.next().map(|span| span.resolve(self.buf))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for HeadersIter<'_> {}
