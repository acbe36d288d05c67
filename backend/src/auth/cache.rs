//! A replica's short memory of callers, so that an authenticated request costs no query
//! before its own: who a session's user is (operator, session epoch), a user's standing in a
//! workgroup (membership, subscription), an API token's row.
//!
//! Revocation stays prompt without any message between replicas: an entry is believed for
//! at most [`FRESH`] (one second), so a revoked token, a removed member, a changed password or
//! a changed subscription is refused on every replica within a second of its commit — and
//! at once on the replica that made the change, which forgets what it changed. Entries are
//! few and small (one per active user, standing and token), and each map is bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::subscriptions::Period;

/// How long an entry is believed.
pub const FRESH: Duration = Duration::from_secs(1);

/// Entries per map at most: beyond it, stale ones go, and if none is stale, all do.
const CAPACITY: usize = 100_000;

/// Values remembered for a while ([`FRESH`] unless said otherwise), per key.
pub struct Remembered<K, V> {
    fresh: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> Default for Remembered<K, V> {
    fn default() -> Self {
        Self::lasting(FRESH)
    }
}

impl<K: Hash + Eq, V: Clone> Remembered<K, V> {
    pub fn lasting(fresh: Duration) -> Self {
        Remembered { fresh, entries: Mutex::new(HashMap::new()) }
    }

    /// The value, if it was put less than its freshness ago.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().expect("auth cache lock");
        entries.get(key).filter(|(at, _)| at.elapsed() < self.fresh).map(|(_, value)| value.clone())
    }

    /// The value remembered, or the one `load` reads (then remembered).
    pub async fn get_or_load<E, F>(&self, key: K, load: impl FnOnce() -> F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let read = Instant::now();
        let value = load().await?;
        self.put(key, value.clone(), read);
        Ok(value)
    }

    /// Remembers `value`, read from the database at `read` (a value read before a change
    /// that was forgotten meanwhile must not outlive that change by more than [`FRESH`]).
    pub fn put(&self, key: K, value: V, read: Instant) {
        let mut entries = self.entries.lock().expect("auth cache lock");
        if entries.len() >= CAPACITY {
            let fresh = self.fresh;
            entries.retain(|_, (at, _)| at.elapsed() < fresh);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (read, value));
    }

    pub fn forget(&self, key: &K) {
        self.entries.lock().expect("auth cache lock").remove(key);
    }

    pub fn forget_where(&self, mut which: impl FnMut(&K, &V) -> bool) {
        self.entries.lock().expect("auth cache lock").retain(|key, (_, value)| !which(key, value));
    }
}

/// A signed-in user as the session check needs them.
#[derive(Debug, Clone, Copy)]
pub struct Account {
    pub is_operator: bool,
    pub session_epoch: i32,
}

/// A user's standing in a workgroup: their membership's permissions (none: not a member)
/// and the workgroup's subscription period (none: no subscription).
#[derive(Debug, Clone)]
pub struct Standing {
    pub permissions: Option<Vec<String>>,
    pub subscription: Option<Period>,
}

/// An API token's row.
#[derive(Debug, Clone)]
pub struct Token {
    pub workgroup_id: Uuid,
    pub secret_hash: Vec<u8>,
    pub subscription: Option<Period>,
}

/// What this replica remembers of callers.
pub struct AuthCache {
    pub accounts: Remembered<Uuid, Option<Account>>,
    /// By (user, workgroup); `None`: no such workgroup.
    pub standings: Remembered<(Uuid, Uuid), Option<Standing>>,
    /// By token id; `None`: no such live token.
    pub tokens: Remembered<Uuid, Option<Token>>,
    /// Tokens whose use this replica recorded in the last minute (usage is for people
    /// reviewing tokens: one write a minute is plenty).
    pub token_uses: Remembered<Uuid, ()>,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            accounts: Remembered::default(),
            standings: Remembered::default(),
            tokens: Remembered::default(),
            token_uses: Remembered::lasting(Duration::from_secs(60)),
        }
    }
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCache")
    }
}

impl AuthCache {
    /// The user's account changed (password, operator): their sessions are checked afresh.
    pub fn forget_user(&self, user_id: Uuid) {
        self.accounts.forget(&user_id);
        self.standings.forget_where(|(user, _), _| *user == user_id);
    }

    /// A membership changed.
    pub fn forget_standing(&self, user_id: Uuid, workgroup_id: Uuid) {
        self.standings.forget(&(user_id, workgroup_id));
    }

    /// The workgroup's subscription changed.
    pub fn forget_workgroup(&self, workgroup_id: Uuid) {
        self.standings.forget_where(|(_, workgroup), _| *workgroup == workgroup_id);
        self.tokens.forget_where(|_, token| token.as_ref().is_some_and(|t| t.workgroup_id == workgroup_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_believed_for_a_second_and_forgotten_on_demand() {
        let remembered = Remembered::<u32, &str>::default();
        remembered.put(1, "fresh", Instant::now());
        remembered.put(2, "stale", Instant::now() - FRESH);
        assert_eq!(remembered.get(&1), Some("fresh"));
        assert_eq!(remembered.get(&2), None);
        remembered.forget(&1);
        assert_eq!(remembered.get(&1), None);
    }
}
