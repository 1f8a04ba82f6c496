//! A core's tasks: the accept loops (plain and TLS), one task per connection, the ticker, and
//! the drain at shutdown. Imports run node → worker → connection (`proxy`): the worker owns the
//! core's [`Core`] state and hands it to each connection.

use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::net::TcpListener;

use crate::core::{Core, TICK};

/// Runs a core until shutdown: accepts connections on its plain and TLS listeners, spawns one
/// task per connection, ticks, and when asked to stop, stops accepting and waits for in-flight
/// requests up to the drain timeout.
pub async fn run(core: Rc<Core>, plain: Option<TcpListener>, secure: Option<TcpListener>) {
    {
        let core = core.clone();
        monoio::spawn(async move {
            while !core.is_draining() {
                monoio::time::sleep(TICK).await;
                core.tick();
            }
        });
    }
    let secure_loop = secure.map(|listener| {
        let core = core.clone();
        monoio::spawn(async move { accept_loop(&core, &listener, true).await })
    });
    if let Some(listener) = plain {
        accept_loop(&core, &listener, false).await;
    }
    if let Some(secure) = secure_loop {
        secure.await;
    }
    let deadline = Instant::now() + core.limits.drain_timeout;
    while core.active() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(access) = core.access.borrow_mut().as_mut() {
        access.flush();
    }
    // Every counted call reaches the sink before the core stops (bounded: the sink drains).
    let flush_deadline = Instant::now() + Duration::from_secs(5);
    while core.flush_usage(true) > 0 && Instant::now() < flush_deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts until the core drains; each connection gets its own task (TLS ones start with their
/// handshake, on this core).
async fn accept_loop(core: &Rc<Core>, listener: &TcpListener, tls: bool) {
    while !core.is_draining() {
        // Cancelled by the ticker when the node shuts down (never by a timeout: cancelling an
        // accept that already produced a socket would leak it on monoio 0.2.4).
        let handle = core.accept_cancel.borrow().handle();
        match listener.cancelable_accept(handle).await {
            Ok((stream, peer)) if tls => {
                monoio::spawn(crate::proxy::serve_tls(core.clone(), stream, peer));
            }
            Ok((stream, peer)) => {
                monoio::spawn(crate::proxy::serve(
                    core.clone(),
                    crate::stream::Stream::Plain(stream),
                    peer,
                ));
            }
            Err(_) if core.is_draining() => break,
            Err(e) => {
                // EMFILE and friends: back off a little instead of spinning.
                tracing::warn!(core = core.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
