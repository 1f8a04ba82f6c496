//! What a server serves: the three calls it makes per request, in order.

use crate::request::{Head, Request};
use crate::response::Response;

/// The API behind a [`crate::Server`]. For each request the server calls, in this order:
/// [`authorize`](Handler::authorize) with the head alone, then
/// [`body_limit`](Handler::body_limit), then reads the body (only up to that limit) and calls
/// [`handle`](Handler::handle).
pub trait Handler: Send + Sync + 'static {
    /// Decides from the head alone whether the request may go on. `Err(response)`: that
    /// response is sent at once and the body, if any, is never read (the connection is closed
    /// when one was announced). Public endpoints answer `Ok(())`.
    ///
    /// # Errors
    /// The response to send instead (typically [`crate::unauthorized`]).
    fn authorize(&self, head: &Head) -> Result<(), Response>;

    /// Most body bytes this (authorized) request may carry: a larger `Content-Length` is
    /// answered 413 before any body byte is read, a chunked body is cut with 413 when it grows
    /// past it. 0 (the default): no body.
    fn body_limit(&self, head: &Head) -> u64 {
        let _ = head;
        0
    }

    /// Answers an authorized request whose body was read whole.
    fn handle(&self, request: &Request) -> Response;
}
