//! Connection slots: a total cap and a cap per peer, taken on accept and given back when the
//! connection's thread ends (also by unwinding: a [`Slot`] releases on drop).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// The server holds its maximum of connections.
    Total,
    /// This peer holds its maximum of connections.
    Peer,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// The slots of one server.
#[derive(Debug)]
pub(crate) struct Slots {
    max_total: usize,
    max_per_peer: usize,
    counts: Mutex<Counts>,
}

/// A taken slot; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

/// The peer a connection is counted against: the IPv4 address (an IPv4-mapped IPv6 address is
/// IPv4), or the /64 of an IPv6 address (one host usually holds a whole /64).
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_peer: max_per_peer.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot for a connection from `ip`.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Busy> {
        let peer = peer_key(ip);
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Busy::Total);
        }
        let held = counts.by_peer.get(&peer).copied().unwrap_or(0);
        if held >= self.max_per_peer {
            return Err(Busy::Peer);
        }
        counts.total += 1;
        counts.by_peer.insert(peer, held + 1);
        Ok(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }

    /// Connections holding a slot.
    pub(crate) fn active(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_cannot_take_more_than_its_share() {
        let slots = Slots::new(10, 3);
        let held: Vec<_> = (0..3)
            .map(|_| slots.acquire(ip("127.0.0.2")).unwrap())
            .collect();
        assert_eq!(slots.acquire(ip("127.0.0.2")).unwrap_err(), Busy::Peer);
        let other = slots.acquire(ip("127.0.0.1")).unwrap();
        assert_eq!(slots.active(), 4);
        drop(held);
        assert_eq!(slots.active(), 1);
        let again = slots.acquire(ip("127.0.0.2")).unwrap();
        drop((other, again));
        assert_eq!(slots.active(), 0);
        assert!(slots.counts().by_peer.is_empty());
    }

    #[test]
    fn the_total_cap_holds_across_peers() {
        let slots = Slots::new(4, 2);
        let _a: Vec<_> = (0..2)
            .map(|_| slots.acquire(ip("10.0.0.1")).unwrap())
            .collect();
        let _b: Vec<_> = (0..2)
            .map(|_| slots.acquire(ip("10.0.0.2")).unwrap())
            .collect();
        assert_eq!(slots.acquire(ip("10.0.0.3")).unwrap_err(), Busy::Total);
    }

    #[test]
    fn ipv6_peers_are_counted_per_slash_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            peer_key(ip("2001:db8:1:2:aaaa::1")),
            peer_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            peer_key(ip("2001:db8:1:2::1")),
            peer_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(peer_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let slots = Slots::new(10, 1);
        let _one = slots.acquire(ip("2001:db8::1")).unwrap();
        assert_eq!(slots.acquire(ip("2001:db8::2")).unwrap_err(), Busy::Peer);
    }
}
