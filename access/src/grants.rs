//! Grants: the methods a caller may call and the datasets it may touch with each.
//!
//! A `Grants` is the union of the caller's roles. An `Access` is what a worker enforces for one
//! call: the intersection of every `Grants` it holds — its own judgement of the caller (everything
//! for a worker without a policy or for the holder of its token; the roles of a policy identity
//! otherwise) and the grants the sender forwarded in `x-polarway-grants`. Forwarded grants can only
//! narrow: a forged header gives nobody more than they already had.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{
    is_flight_method, is_polarway_method, AccessError, DATASETLESS_METHODS, FLIGHT_AMOUNTS_TO,
};

/// The header that carries a caller's grants from the gateway to a worker.
pub const GRANTS_HEADER: &str = "x-polarway-grants";

/// Largest grants header accepted (a policy with hundreds of patterns fits easily).
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// One role's worth of permission: these methods on datasets matching these globs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(rename = "m")]
    pub methods: Vec<String>,
    #[serde(rename = "d")]
    pub datasets: Vec<String>,
}

impl Rule {
    fn grants_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == "*" || m == method)
    }

    fn matches(&self, dataset: &str) -> bool {
        self.datasets.iter().any(|p| glob_match(p, dataset))
    }
}

/// What one caller may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Who the grants belong to, for messages and logs.
    #[serde(rename = "id")]
    pub identity: String,
    #[serde(rename = "r")]
    pub rules: Vec<Rule>,
}

impl Grants {
    /// Every method on every dataset.
    pub fn everything(identity: &str) -> Self {
        Self {
            identity: identity.to_string(),
            rules: vec![Rule {
                methods: vec!["*".into()],
                datasets: vec!["*".into()],
            }],
        }
    }

    /// May the caller call `method` at all (on some dataset, or on none)?
    pub fn may_call(&self, method: &str) -> bool {
        self.rules.iter().any(|r| r.grants_method(method))
    }

    /// May the caller call `method` on `dataset`?
    pub fn allows(&self, method: &str, dataset: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.grants_method(method) && r.matches(dataset))
    }

    /// May the caller call `method` on every dataset there is (so a call that names none is fine)?
    pub fn allows_all(&self, method: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.grants_method(method) && r.datasets.iter().any(|p| p == "*"))
    }

    /// The header value: URL-safe base64 of compact JSON.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("grants serialize");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(value: &str) -> Result<Self, String> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(format!(
                "{GRANTS_HEADER} is longer than {MAX_HEADER_BYTES} bytes"
            ));
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim())
            .map_err(|_| format!("{GRANTS_HEADER} is not URL-safe base64"))?;
        serde_json::from_slice(&json)
            .map_err(|e| format!("{GRANTS_HEADER} is not valid grants: {e}"))
    }
}

/// What one call may do on a worker: allowed only where every layer of grants allows it. No
/// layers: a worker without a policy, whose callers may do everything.
#[derive(Clone, Debug, Default)]
pub struct Access {
    layers: Vec<Arc<Grants>>,
}

impl Access {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn of(grants: Grants) -> Self {
        Self {
            layers: vec![Arc::new(grants)],
        }
    }

    /// Narrow to what `grants` also allows.
    pub fn narrowed(mut self, grants: Grants) -> Self {
        self.layers.push(Arc::new(grants));
        self
    }

    /// Whether nothing restricts this call.
    pub fn is_everything(&self) -> bool {
        self.layers.iter().all(|g| g.allows_all("*"))
    }

    /// The caller's name: the identity the worker itself established (the first layer), else
    /// the one its trusted sender forwarded. A forwarded name never overrides the worker's own.
    pub fn who(&self) -> &str {
        self.layers
            .first()
            .map_or("the caller", |g| g.identity.as_str())
    }

    pub fn may_call(&self, method: &str) -> bool {
        self.layers.iter().all(|g| g.may_call(method))
    }

    pub fn allows(&self, method: &str, dataset: &str) -> bool {
        self.layers.iter().all(|g| g.allows(method, dataset))
    }

    pub fn allows_all(&self, method: &str) -> bool {
        self.layers.iter().all(|g| g.allows_all(method))
    }

    /// Refuse unless the caller may call `method` at all.
    pub fn check_call(&self, method: &str) -> Result<(), AccessError> {
        if self.may_call(method) {
            return Ok(());
        }
        Err(AccessError::PermissionDenied(format!(
            "{} may not call {method}",
            self.who()
        )))
    }

    /// Refuse unless the caller may call `method` on `dataset`. The answer depends only on the
    /// name, never on whether the dataset exists, so a refusal reveals nothing about it.
    pub fn check(&self, method: &str, dataset: &str) -> Result<(), AccessError> {
        self.check_call(method)?;
        if self.allows(method, dataset) {
            return Ok(());
        }
        Err(AccessError::PermissionDenied(format!(
            "{} may not call {method} on dataset {dataset:?}",
            self.who()
        )))
    }
}

/// Does a gateway-side check of `method` with the routing key `key` pass? Without a key the
/// gateway cannot tell which dataset a call touches: only dataset-less calls, calls of other
/// services, and grants over every dataset go on (the worker checks the names again anyway).
/// A query's key is only a routing hint (its first table): the worker checks every dataset the
/// SQL reads, so at the gateway Query needs the method alone.
pub fn gateway_allows(grants: &Grants, method: &str, key: Option<&str>) -> Result<(), AccessError> {
    if is_flight_method(method) {
        // The key only routes a Flight call; the worker checks what its command touches.
        return match FLIGHT_AMOUNTS_TO.iter().any(|m| grants.may_call(m)) {
            true => Ok(()),
            false => Err(AccessError::PermissionDenied(format!(
                "{} may not use any dataset, so no Flight call",
                grants.identity
            ))),
        };
    }
    if !grants.may_call(method) {
        return Err(AccessError::PermissionDenied(format!(
            "{} may not call {method}",
            grants.identity
        )));
    }
    let unnamed =
        DATASETLESS_METHODS.contains(&method) || !is_polarway_method(method) || method == "Query";
    let ok = match key {
        _ if unnamed => true,
        Some(key) => grants.allows(method, key),
        None => grants.allows_all(method),
    };
    if ok {
        return Ok(());
    }
    Err(AccessError::PermissionDenied(match key {
        Some(k) => format!("{} may not call {method} on dataset {k:?}", grants.identity),
        None => {
            format!(
                "{} may call {method} only with an x-polarway-key naming a dataset it may use",
                grants.identity
            )
        }
    }))
}

/// Glob with `*` (any run) and `?` (one character), as in role dataset patterns.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What a dataset named in a request body needs: the method itself on it, except the target of
/// a Query's `into`, which is written (Store).
pub fn body_permission(method: &str) -> &str {
    if method == "Query" {
        "Store"
    } else {
        method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_calls_at_the_gateway() {
        let get = "arrow.flight.protocol.FlightService/DoGet";
        // A role that may use some dataset may make Flight calls (the worker checks each command);
        // a role with no data method may not, whatever the key.
        assert!(gateway_allows(&alice(), get, None).is_ok());
        assert!(gateway_allows(&alice(), get, Some("bob_1")).is_ok());
        let health_only = Grants {
            identity: "probe".into(),
            rules: vec![Rule {
                methods: vec!["Health".into()],
                datasets: vec!["*".into()],
            }],
        };
        assert!(gateway_allows(&health_only, get, None).is_err());
    }

    fn alice() -> Grants {
        Grants {
            identity: "alice".into(),
            rules: vec![
                Rule {
                    methods: vec!["Load".into(), "Query".into(), "List".into()],
                    datasets: vec!["alice_*".into()],
                },
                Rule {
                    methods: vec!["Store".into()],
                    datasets: vec!["alice_out_*".into()],
                },
            ],
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("trades_*", "trades_20260203"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(!glob_match("trades_*", "quotes_1"));
        assert!(!glob_match("trades_?", "trades_12"));
    }

    #[test]
    fn rules_pair_methods_with_datasets() {
        let g = alice();
        assert!(g.allows("Load", "alice_x"));
        assert!(!g.allows("Load", "bob_x"));
        assert!(
            !g.allows("Store", "alice_x"),
            "Store is granted on alice_out_* only"
        );
        assert!(g.allows("Store", "alice_out_1"));
        assert!(!g.allows_all("Load"));
    }

    #[test]
    fn access_is_the_intersection() {
        let wide = Access::everything();
        assert!(wide.allows("Delete", "anything"));
        let a = Access::everything().narrowed(alice());
        assert!(a.check("Load", "alice_x").is_ok());
        assert!(
            matches!(a.check("Load", "bob_x"), Err(AccessError::PermissionDenied(m)) if m.contains("bob_x"))
        );
        // A forged header cannot widen a policy identity's grants.
        let forged = Access::of(alice()).narrowed(Grants::everything("forged"));
        assert!(!forged.allows("Load", "bob_x"));
        assert!(!forged.may_call("Delete"));
    }

    #[test]
    fn header_round_trip() {
        let g = alice();
        let v = g.encode();
        assert!(http::HeaderValue::from_str(&v).is_ok());
        assert_eq!(Grants::decode(&v).unwrap(), g);
        assert!(Grants::decode("not base64!").is_err());
        assert!(Grants::decode(&"A".repeat(MAX_HEADER_BYTES + 1)).is_err());
    }

    #[test]
    fn gateway_check_without_key() {
        let g = alice();
        assert!(gateway_allows(&g, "List", None).is_ok());
        assert!(gateway_allows(&g, "Load", None).is_err());
        assert!(gateway_allows(&g, "Load", Some("alice_1")).is_ok());
        assert!(gateway_allows(&g, "Delete", Some("alice_1")).is_err());
        assert!(gateway_allows(&Grants::everything("admin"), "Load", None).is_ok());
    }
}
