//! Building one monoio runtime per core: io_uring with the ring flags that make it cheaper than
//! epoll on current kernels, falling back to fewer flags and then to the epoll ("legacy") driver
//! when the kernel refuses (seccomp, old kernel, memlock), logged once at warn with the reason.
//!
//! With `DEFER_TASKRUN` and `SINGLE_ISSUER` the ring may only be used by the thread that built
//! it, which thread-per-core gives: each core builds its runtime on its own thread.

use std::fmt;
use std::io;
use std::str::FromStr;

use monoio::time::TimeDriver;

use crate::error::{GatewayError, GatewayErrorKind};
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

/// The runtime type every core runs.
pub type Runtime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Which IO driver to use (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when it works, else epoll.
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll.
    Epoll,
}

impl FromStr for IoMode {
    type Err = GatewayError;
    fn from_str(s: &str) -> Result<Self, GatewayError> {
        match s {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" => Ok(Self::Uring),
            "epoll" | "legacy" => Ok(Self::Epoll),
            other => Err(GatewayError::new(
                GatewayErrorKind::Config,
                format!("expected auto, uring or epoll, got {other:?}"),
            )),
        }
    }
}

/// The driver a core ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, with the ring set-up flags that were accepted.
    Uring {
        /// e.g. `coop_taskrun+single_issuer+defer_taskrun`.
        flags: &'static str,
    },
    /// epoll, and why.
    Epoll {
        /// Why io_uring is not used (`forced` when asked for).
        reason: String,
    },
}

impl Driver {
    /// `io_uring` or `epoll`, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Uring { .. } => "io_uring",
            Self::Epoll { .. } => "epoll",
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uring { flags } => write!(f, "io_uring ({flags})"),
            Self::Epoll { reason } => write!(f, "epoll ({reason})"),
        }
    }
}

const RING_ENTRIES: u32 = 4096;

/// Applies ring set-up flags to a builder.
type SetUp = fn(&mut io_uring::Builder);

/// Ring set-ups to try, cheapest first.
const LEVELS: &[(&str, SetUp)] = &[
    ("coop_taskrun+single_issuer+defer_taskrun", |b| {
        b.setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
    }),
    ("coop_taskrun+single_issuer", |b| {
        b.setup_coop_taskrun().setup_single_issuer();
    }),
    ("coop_taskrun", |b| {
        b.setup_coop_taskrun();
    }),
    ("default", |_| {}),
];

/// An io_uring runtime with the cheapest ring set-up the kernel takes.
///
/// # Errors
/// A [`GatewayErrorKind::Driver`] error: the probe failed, or the last set-up's refusal.
fn uring() -> Result<(Runtime, Driver), GatewayError> {
    if !monoio::utils::detect_uring() {
        return Err(GatewayError::new(
            GatewayErrorKind::Driver,
            "io_uring unavailable: the probe failed (seccomp filter, old kernel, \
             kernel.io_uring_disabled, or MONOIO_FORCE_LEGACY_DRIVER)",
        ));
    }
    let mut last = GatewayError::new(GatewayErrorKind::Driver, "no ring set-up to try");
    for (flags, set) in LEVELS {
        let mut builder = io_uring::IoUring::builder();
        set(&mut builder);
        match RuntimeBuilder::<IoUringDriver>::new()
            .with_entries(RING_ENTRIES)
            .uring_builder(builder)
            .enable_timer()
            .build()
        {
            Ok(rt) => return Ok((rt.into(), Driver::Uring { flags })),
            Err(e) => {
                last = GatewayError::with(
                    GatewayErrorKind::Driver,
                    format!("ring set-up `{flags}` refused"),
                    e,
                );
            }
        }
    }
    Err(last)
}

fn epoll(reason: String) -> io::Result<(Runtime, Driver)> {
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .enable_timer()
        .build()?;
    Ok((rt.into(), Driver::Epoll { reason }))
}

/// Builds this thread's runtime.
///
/// # Errors
/// When `mode` is [`IoMode::Uring`] and io_uring cannot be used, or when even epoll fails.
pub fn build(mode: IoMode) -> io::Result<(Runtime, Driver)> {
    match mode {
        IoMode::Epoll => epoll("forced with --io epoll".to_owned()),
        IoMode::Uring => uring().map_err(io::Error::other),
        IoMode::Auto => match uring() {
            Ok(ok) => Ok(ok),
            Err(reason) => epoll(reason.to_string()),
        },
    }
}

/// The IO lines of `gateway --version`: the drivers this build has and whether io_uring works on
/// this machine (the same probe `--io auto` makes at start).
#[must_use]
pub fn io_features() -> String {
    let here = if monoio::utils::detect_uring() {
        "io_uring works on this machine (--io auto uses it)".to_owned()
    } else {
        "io_uring does not work on this machine (seccomp filter, old kernel, \
         kernel.io_uring_disabled or MONOIO_FORCE_LEGACY_DRIVER): --io auto uses epoll"
            .to_owned()
    };
    format!(
        "io drivers: io_uring (ring flags coop_taskrun, single_issuer, defer_taskrun when the \
         kernel takes them) and epoll, both built in (monoio, --io auto|uring|epoll)\n{here}"
    )
}
