//! Building one monoio runtime per worker thread: io_uring with the cheap-completion ring flags
//! when the kernel takes them, fewer flags when it refuses, then the legacy epoll driver.

use std::{fmt, future::Future, io};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder, time::TimeDriver};

use crate::Error;

/// Which IO driver the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when available, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// The legacy epoll driver.
    Epoll,
}

/// The driver a worker actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    /// io_uring, with the set-up flags it was built with.
    Uring(RingFlags),
    /// The legacy epoll driver.
    Epoll,
}

/// io_uring set-up flags, from most to least wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFlags {
    /// `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN` (kernel ≥ 6.1).
    CoopSingleDefer,
    /// `COOP_TASKRUN | SINGLE_ISSUER` (kernel ≥ 6.0).
    CoopSingle,
    /// `COOP_TASKRUN` (kernel ≥ 5.19).
    Coop,
    /// monoio's defaults.
    Plain,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverKind::Uring(RingFlags::CoopSingleDefer) => {
                f.write_str("io_uring (coop_taskrun, single_issuer, defer_taskrun)")
            }
            DriverKind::Uring(RingFlags::CoopSingle) => {
                f.write_str("io_uring (coop_taskrun, single_issuer)")
            }
            DriverKind::Uring(RingFlags::Coop) => f.write_str("io_uring (coop_taskrun)"),
            DriverKind::Uring(RingFlags::Plain) => f.write_str("io_uring"),
            DriverKind::Epoll => f.write_str("epoll"),
        }
    }
}

const RING_ENTRIES: u32 = 4096;

fn ring(flags: RingFlags) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    match flags {
        RingFlags::CoopSingleDefer => {
            b.setup_coop_taskrun()
                .setup_single_issuer()
                .setup_defer_taskrun();
        }
        RingFlags::CoopSingle => {
            b.setup_coop_taskrun().setup_single_issuer();
        }
        RingFlags::Coop => {
            b.setup_coop_taskrun();
        }
        RingFlags::Plain => {}
    }
    b
}

/// Builds a runtime on the calling thread (rings must be used by the thread that built them)
/// and runs the future `make` returns on it. Falls back as [`IoMode`] allows; `on_fallback`
/// hears why a better driver was refused.
///
/// # Errors
/// [`Error::Runtime`] when no allowed driver could be built.
pub fn block_on<F: Future>(
    mode: IoMode,
    make: impl FnOnce(DriverKind) -> F,
    mut on_fallback: impl FnMut(String),
) -> Result<F::Output, Error> {
    if mode != IoMode::Epoll {
        if monoio::utils::detect_uring() {
            let mut last_err: Option<io::Error> = None;
            for flags in [
                RingFlags::CoopSingleDefer,
                RingFlags::CoopSingle,
                RingFlags::Coop,
                RingFlags::Plain,
            ] {
                match RuntimeBuilder::<TimeDriver<IoUringDriver>>::new()
                    .with_entries(RING_ENTRIES)
                    .uring_builder(ring(flags))
                    .build()
                {
                    Ok(mut rt) => {
                        if let Some(e) = last_err {
                            on_fallback(format!(
                                "io_uring refused better ring flags ({e}); using {}",
                                DriverKind::Uring(flags)
                            ));
                        }
                        let kind = DriverKind::Uring(flags);
                        return Ok(rt.block_on(make(kind)));
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            let e = last_err.unwrap_or_else(|| io::Error::other("io_uring unavailable"));
            if mode == IoMode::Uring {
                return Err(Error::Runtime(e));
            }
            on_fallback(format!(
                "io_uring ring could not be built ({e}); using epoll"
            ));
        } else if mode == IoMode::Uring {
            return Err(Error::Runtime(io::Error::other(
                "io_uring is not available on this kernel (or blocked by seccomp)",
            )));
        } else {
            on_fallback("io_uring is not available; using epoll".into());
        }
    }
    let mut rt = RuntimeBuilder::<TimeDriver<LegacyDriver>>::new()
        .with_entries(RING_ENTRIES)
        .build()
        .map_err(Error::Runtime)?;
    Ok(rt.block_on(make(DriverKind::Epoll)))
}
