//! Automatic secret rotation (Otoroshi's `rotation {enabled, rotationEvery, gracePeriod,
//! nextSecret}`), decided from the fold and an instant passed in, so tests drive it with a fake
//! clock. A cycle runs from `startedAt` to `end = startedAt + rotationEvery` hours:
//!
//! - at `end - gracePeriod` the next secret is generated and published (`updated`): both the
//!   current and the next secret are accepted from then on;
//! - at `end` the next secret becomes the client secret (`rotated`) and a new cycle starts;
//! - beyond Otoroshi, the replaced secret stays accepted for the post-rotation grace
//!   (`[admin] previous_secret_grace_s`), after which it is dropped (`updated`).
//!
//! Every step is an entity event; the secrets in them are sealed like any other.
//!
//! **One owner per key in a cluster.** Every node runs this check on its own fold; left alone,
//! two nodes would each generate a next secret for the same key (the entity topic would then
//! keep the later one, after one of them had already been handed out). So in a cluster
//! ([`due_owned`]) a step is taken only by the key's owner: the node that wrote the key's last
//! event (every node knows it from the fold, the same on all of them once they converge; a
//! rotation step is written by the owner, so ownership stays put, and an admin change moves it
//! to the node that made it). A step the owner has not taken `(1 + rank) × TAKEOVER_MS` after it
//! was due (a stopped owner) is taken by the node of that rank among the other nodes known from
//! the fold, in id order: the first takeover is written before the next rank's turn, and
//! ownership moves with it.

use gateway_model::entity::Secret;
use gateway_model::event::{EntityAction, EntityKind};

use crate::entitylog::{Change, Entity, State};

const HOUR_MS: i64 = 3_600_000;

/// A fresh secret: 64 letters and digits from the OS's randomness.
pub fn generate_secret() -> Secret {
    Secret::new(random_token(64))
}

/// `len` lowercase letters and digits (client ids).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    random_from(len, ALPHABET)
}

/// `len` lowercase letters and digits.
pub fn random_lower(len: usize) -> String {
    random_from(len, b"abcdefghijklmnopqrstuvwxyz0123456789")
}

fn random_from(len: usize, alphabet: &[u8]) -> String {
    let bytes = crate::seal::random_bytes(len * 2)
        .unwrap_or_else(|_| crate::quickstart::random_hex(len * 2).into_bytes());
    let n = alphabet.len();
    bytes
        .chunks(2)
        .take(len)
        .map(|c| {
            let v = usize::from(c.first().copied().unwrap_or(0)) << 8
                | usize::from(c.get(1).copied().unwrap_or(0));
            char::from(alphabet.get(v % n).copied().unwrap_or(b'a'))
        })
        .collect()
}

/// How long after a step is due the first other node takes it over from a silent owner.
pub const TAKEOVER_MS: i64 = 60_000;

/// The rotation steps due at `now_ms`, one change per key at most (a node alone: every key).
pub fn due(state: &State, now_ms: i64, post_grace_ms: i64) -> Vec<Change> {
    steps(state, now_ms, post_grace_ms)
        .into_iter()
        .map(|(change, _)| change)
        .collect()
}

/// The rotation steps due at `now_ms` that `node` owns in a cluster (see the module docs).
pub fn due_owned(state: &State, now_ms: i64, post_grace_ms: i64, node: &str) -> Vec<Change> {
    let writers = state.writers();
    steps(state, now_ms, post_grace_ms)
        .into_iter()
        .filter(|(change, due_at)| {
            let Some((_, owner)) = state.last_writer(EntityKind::ApiKey, &change.id) else {
                return true;
            };
            if owner == node {
                return true;
            }
            let mut others: Vec<&str> = writers
                .iter()
                .copied()
                .chain(std::iter::once(node))
                .filter(|n| *n != owner)
                .collect();
            others.sort_unstable();
            others.dedup();
            let rank = others.iter().position(|n| *n == node).unwrap_or(0);
            let wait = TAKEOVER_MS.saturating_mul(i64::try_from(rank).unwrap_or(i64::MAX - 1) + 1);
            now_ms >= due_at.saturating_add(wait)
        })
        .map(|(change, _)| change)
        .collect()
}

/// The steps due at `now_ms`, each with the instant it became due.
fn steps(state: &State, now_ms: i64, post_grace_ms: i64) -> Vec<(Change, i64)> {
    let mut out = Vec::new();
    for (entity, _) in state.list(EntityKind::ApiKey) {
        let Entity::ApiKey(key, rotation) = entity else {
            continue;
        };
        let mut key = key.clone();
        let mut rot = rotation.clone();
        // The previous secret's grace ended: drop it.
        if rot.previous.is_some() && rot.previous_until.is_none_or(|t| now_ms >= t) {
            let due_at = rot.previous_until.unwrap_or(now_ms);
            rot.previous = None;
            rot.previous_until = None;
            out.push((
                Change::put(EntityAction::Updated, Entity::ApiKey(key, rot)),
                due_at,
            ));
            continue;
        }
        if !key.rotation.enabled {
            continue;
        }
        let Some(started) = rot.started_at else {
            // Due since rotation was enabled: the key's last event.
            let due_at = state
                .last_writer(EntityKind::ApiKey, &key.client_id)
                .map_or(now_ms, |(at, _)| at);
            rot.started_at = Some(now_ms);
            out.push((
                Change::put(EntityAction::Updated, Entity::ApiKey(key, rot)),
                due_at,
            ));
            continue;
        };
        let every = i64::try_from(key.rotation.rotation_every)
            .unwrap_or(i64::MAX / HOUR_MS)
            .saturating_mul(HOUR_MS);
        let grace = i64::try_from(key.rotation.grace_period)
            .unwrap_or(0)
            .saturating_mul(HOUR_MS)
            .min(every);
        let end = started.saturating_add(every);
        if now_ms >= end {
            let next = key
                .rotation
                .next_secret
                .take()
                .unwrap_or_else(generate_secret);
            let old = std::mem::replace(&mut key.client_secret, next);
            if post_grace_ms > 0 {
                rot.previous = Some(old);
                rot.previous_until = Some(now_ms.saturating_add(post_grace_ms));
            } else {
                rot.previous = None;
                rot.previous_until = None;
            }
            // A node that was down for more than a cycle starts afresh instead of catching up.
            rot.started_at = Some(if now_ms - end >= every { now_ms } else { end });
            out.push((
                Change::put(EntityAction::Rotated, Entity::ApiKey(key, rot)),
                end,
            ));
        } else if now_ms >= end - grace && key.rotation.next_secret.is_none() {
            key.rotation.next_secret = Some(generate_secret());
            out.push((
                Change::put(EntityAction::Updated, Entity::ApiKey(key, rot)),
                end - grace,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitylog::RotationState;
    use gateway_model::entity::ApiKey;

    fn state(started: Option<i64>) -> State {
        let key: ApiKey = serde_json::from_value(serde_json::json!({
            "clientId": "k", "clientSecret": "first",
            "rotation": {"enabled": true, "rotationEvery": 10, "gracePeriod": 2}
        }))
        .unwrap();
        let mut s = State::default();
        let rot = RotationState {
            started_at: started,
            ..RotationState::default()
        };
        s.set(
            EntityKind::ApiKey,
            "k",
            1,
            Some(Entity::ApiKey(Box::new(key), rot)),
        );
        s
    }

    fn apply(s: &mut State, changes: Vec<Change>) {
        for c in changes {
            let v = s.version(c.kind, &c.id) + 1;
            s.set(c.kind, &c.id, v, c.entity);
        }
    }

    fn key(s: &State) -> (ApiKey, RotationState) {
        match s.get(EntityKind::ApiKey, "k").unwrap().0 {
            Entity::ApiKey(k, r) => ((**k).clone(), r.clone()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_whole_cycle() {
        let mut s = state(None);
        let c = due(&s, 1_000, 60_000);
        assert_eq!(c.len(), 1);
        apply(&mut s, c);
        assert_eq!(key(&s).1.started_at, Some(1_000));
        // Before the grace period: nothing.
        assert!(due(&s, 1_000 + 7 * HOUR_MS, 60_000).is_empty());
        // The grace period starts: a next secret is published.
        let at = 1_000 + 8 * HOUR_MS;
        let c = due(&s, at, 60_000);
        assert_eq!(c[0].action, EntityAction::Updated);
        apply(&mut s, c);
        let next = key(&s).0.rotation.next_secret.unwrap();
        assert_eq!(next.expose().len(), 64);
        assert!(
            due(&s, at + 1, 60_000).is_empty(),
            "idempotent within a phase"
        );
        // The switch.
        let end = 1_000 + 10 * HOUR_MS;
        let c = due(&s, end, 60_000);
        assert_eq!(c[0].action, EntityAction::Rotated);
        apply(&mut s, c);
        let (k, r) = key(&s);
        assert_eq!(k.client_secret, next);
        assert!(k.rotation.next_secret.is_none());
        assert_eq!(r.previous.unwrap().expose(), "first");
        assert_eq!(r.previous_until, Some(end + 60_000));
        assert_eq!(r.started_at, Some(end));
        // The old secret is still accepted by the data plane until the grace ends.
        let dp = s.entities(end + 59_999);
        assert_eq!(
            dp.apikeys[0]
                .rotation
                .next_secret
                .as_ref()
                .unwrap()
                .expose(),
            "first"
        );
        let c = due(&s, end + 60_000, 60_000);
        assert_eq!(c[0].action, EntityAction::Updated);
        apply(&mut s, c);
        assert!(key(&s).1.previous.is_none());
        assert!(
            s.entities(end + 60_000).apikeys[0]
                .rotation
                .next_secret
                .is_none()
        );
    }

    #[test]
    fn in_a_cluster_only_the_owner_rotates_until_it_is_overdue() {
        let mut s = State::default();
        let key: ApiKey = serde_json::from_value(serde_json::json!({
            "clientId": "k", "clientSecret": "first",
            "rotation": {"enabled": true, "rotationEvery": 10, "gracePeriod": 2}
        }))
        .unwrap();
        let rot = RotationState {
            started_at: Some(0),
            ..RotationState::default()
        };
        s.set_stamped(
            EntityKind::ApiKey,
            "k",
            1,
            Some(Entity::ApiKey(Box::new(key), rot)),
            (0, "e1@node-b".to_owned()),
        );
        s.set_stamped(EntityKind::Route, "r", 1, None, (0, "e2@node-a".to_owned()));
        s.set_stamped(
            EntityKind::Route,
            "r2",
            1,
            None,
            (0, "e3@node-c".to_owned()),
        );
        let grace_start = 8 * HOUR_MS;
        // The owner (the key's last writer) takes the step as soon as it is due; the others do
        // not.
        assert_eq!(due_owned(&s, grace_start, 0, "node-b").len(), 1);
        assert!(due_owned(&s, grace_start, 0, "node-a").is_empty());
        assert!(due_owned(&s, grace_start, 0, "node-c").is_empty());
        // A silent owner: node-a (first of the others) after one takeover delay, node-c after
        // two.
        let later = grace_start + TAKEOVER_MS;
        assert_eq!(due_owned(&s, later, 0, "node-a").len(), 1);
        assert!(due_owned(&s, later, 0, "node-c").is_empty());
        assert_eq!(due_owned(&s, later + TAKEOVER_MS, 0, "node-c").len(), 1);
        // A node alone takes every step.
        assert_eq!(due(&s, grace_start, 0).len(), 1);
    }

    #[test]
    fn tokens_use_the_alphabet() {
        let t = random_lower(32);
        assert_eq!(t.len(), 32);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(random_token(64), random_token(64));
    }
}
