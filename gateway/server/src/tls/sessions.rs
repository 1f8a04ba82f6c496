//! A per-core TLS session cache (TLS 1.2 session ids; TLS 1.3 resumes with tickets): each core's
//! thread has its own bounded map, so storing and looking up a session never takes a lock. A
//! client that resumes on another core misses and does a full handshake.

use std::cell::RefCell;
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Sessions kept per core.
const CAPACITY: usize = 4096;

#[derive(Default)]
struct Lru {
    map: FxHashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

thread_local! {
    static CACHE: RefCell<Lru> = RefCell::new(Lru::default());
}

/// The session store of the core whose thread calls it.
#[derive(Debug, Default)]
pub struct CoreSessionCache;

impl rustls::server::StoresServerSessions for CoreSessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if !c.map.contains_key(&key) {
                if c.map.len() >= CAPACITY {
                    if let Some(oldest) = c.order.pop_front() {
                        c.map.remove(&oldest);
                    }
                }
                c.order.push_back(key.clone());
            }
            c.map.insert(key, value);
        });
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        CACHE.with(|c| c.borrow().map.get(key).cloned())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let v = c.map.remove(key)?;
            c.order.retain(|k| k != key);
            Some(v)
        })
    }

    fn can_cache(&self) -> bool {
        true
    }
}
