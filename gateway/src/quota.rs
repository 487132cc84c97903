//! Quotas: the policy's rates as governor (GCRA) limiters keyed per identity, plus per identity
//! and method where the policy says. Key memory is bounded: idle keys are dropped every few
//! seconds, and past `max_rate_keys` new keys share one overflow bucket. The limiters are runtime
//! state of the rate-limit layer, made from the policy in force and made afresh when it changes.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use polarway_access::{Identity, Policy, PolicyHandle, RateFile};

const OVERFLOW_KEY: &str = "\u{0}overflow";

fn quota(r: &RateFile) -> Quota {
    let period = Duration::from_secs_f64(1.0 / r.per_second).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("positive period")
        .allow_burst(NonZeroU32::new(r.burst).unwrap_or(NonZeroU32::MIN))
}

struct Bucket {
    limiter: DefaultKeyedRateLimiter<String>,
}

/// The limiters of one policy (a reload starts them afresh).
pub struct RateLimits {
    default: Option<Bucket>,
    methods: HashMap<String, Bucket>,
    /// Identities with their own quota: one limiter per distinct quota.
    own: std::sync::Mutex<HashMap<(u64, u32), Arc<Bucket>>>,
    max_keys: usize,
}

impl RateLimits {
    pub fn for_policy(policy: &Policy) -> Self {
        let l = &policy.limits;
        Self::new(l.rate, &l.methods, l.max_rate_keys.unwrap_or(100_000))
    }

    pub fn new(
        default: Option<RateFile>,
        methods: &BTreeMap<String, RateFile>,
        max_keys: usize,
    ) -> Self {
        let bucket = |r: &RateFile| Bucket {
            limiter: RateLimiter::keyed(quota(r)),
        };
        Self {
            default: default.as_ref().map(bucket),
            methods: methods
                .iter()
                .map(|(m, r)| (m.clone(), bucket(r)))
                .collect(),
            own: Default::default(),
            max_keys: max_keys.max(1),
        }
    }

    fn check(&self, bucket: &Bucket, identity: &Identity) -> Result<(), Duration> {
        // Policy identities are a fixed set; JWT subjects are not: past the bound, new ones share
        // one bucket so that memory stays bounded whatever tokens callers bring.
        let key = if identity.dynamic && bucket.limiter.len() >= self.max_keys {
            OVERFLOW_KEY.to_string()
        } else {
            identity.name.clone()
        };
        bucket
            .limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Take one call from the identity's quotas; the wait until the next allowed call if over.
    pub fn acquire(&self, identity: &Identity, method: &str) -> Result<(), Duration> {
        match &identity.rate {
            Some(r) => {
                let id = (r.per_second.to_bits(), r.burst);
                let bucket = self
                    .own
                    .lock()
                    .unwrap()
                    .entry(id)
                    .or_insert_with(|| {
                        Arc::new(Bucket {
                            limiter: RateLimiter::keyed(quota(r)),
                        })
                    })
                    .clone();
                self.check(&bucket, identity)?;
            }
            None => {
                if let Some(b) = &self.default {
                    self.check(b, identity)?;
                }
            }
        }
        if let Some(b) = self.methods.get(method) {
            self.check(b, identity)?;
        }
        Ok(())
    }

    /// Forget keys whose buckets are full again (nothing to remember about them).
    pub fn sweep(&self) {
        let all = self.default.iter().chain(self.methods.values());
        for b in all {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
        for b in self.own.lock().unwrap().values() {
            b.limiter.retain_recent();
        }
    }
}

/// The limiters of the policy in force, made when a policy is first used.
pub struct Limiters {
    policy: PolicyHandle,
    current: Mutex<Option<(Arc<Policy>, Arc<RateLimits>)>>,
}

impl Limiters {
    /// Also starts the task that forgets idle keys (so call it inside the runtime); it ends when
    /// the limiters are dropped.
    pub fn new(policy: PolicyHandle) -> Arc<Self> {
        let limiters = Arc::new(Self {
            policy,
            current: Mutex::new(None),
        });
        let weak = Arc::downgrade(&limiters);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let Some(limiters) = weak.upgrade() else {
                    return;
                };
                limiters.get().sweep();
            }
        });
        limiters
    }

    pub fn get(&self) -> Arc<RateLimits> {
        let policy = self.policy.current();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some((p, limits)) if Arc::ptr_eq(p, &policy) => limits.clone(),
            _ => {
                let limits = Arc::new(RateLimits::for_policy(&policy));
                *current = Some((policy, limits.clone()));
                limits
            }
        }
    }
}
