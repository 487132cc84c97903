//! Property-based fuzzing of what the gateway and the worker parse from callers and operators,
//! on stable Rust (proptest): grants headers, policy files, bearer tokens and JWTs. No input may
//! panic; every refusal is an error value. `PROPTEST_CASES` cases per property (256 by default, as
//! in CI); for a long run: `PROPTEST_CASES=200000 cargo test --release --workspace --test fuzz`.

use polarway_access::{AccessError, Grants, JwksCache, Policy, PolicyFile, Rule};
use proptest::prelude::*;

fn rule() -> impl Strategy<Value = Rule> {
    (
        proptest::collection::vec("[A-Za-z*]{1,12}", 0..4),
        proptest::collection::vec("[A-Za-z0-9_.*?\\-]{0,16}", 0..4),
    )
        .prop_map(|(methods, datasets)| Rule { methods, datasets })
}

/// A policy with one token identity and one JWT issuer (an HMAC key), to authenticate against.
fn policy() -> Policy {
    let text = r#"
        [[identity]]
        name = "alice"
        token = "alice-token"
        roles = ["reader"]

        [[jwt]]
        issuer = "https://issuer.test"
        audiences = ["polarway"]
        algorithms = ["HS256"]
        default_roles = ["reader"]
        [[jwt.keys]]
        kid = "k1"
        alg = "HS256"
        secret = "a-shared-secret-of-enough-length"

        [roles.reader]
        methods = ["Load", "List"]
        datasets = ["public_*"]
    "#;
    let file: PolicyFile = toml::from_str(text).unwrap();
    Policy::compile(file, None).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    /// Grants survive the header they travel in, exactly.
    #[test]
    fn grants_round_trip_through_the_header(
        identity in "\\PC{0,40}",
        rules in proptest::collection::vec(rule(), 0..6),
    ) {
        let grants = Grants { identity, rules };
        prop_assert_eq!(Grants::decode(&grants.encode()).unwrap(), grants);
    }

    /// Any header value: grants or an error, never a crash.
    #[test]
    fn any_grants_header_is_decoded_or_refused(value in "\\PC{0,400}|[A-Za-z0-9_\\-]{0,400}") {
        let _ = Grants::decode(&value);
    }

    /// Any policy text: a policy or an error that says what is wrong, never a crash.
    #[test]
    fn any_policy_text_is_compiled_or_refused(
        text in "\\PC{0,300}",
        fields in proptest::collection::vec(
            prop_oneof![
                Just("[[identity]]\nname = \"a\"\ntoken = \"t\"\n"),
                Just("roles = [\"r\"]\n"),
                Just("[roles.r]\nmethods = [\"*\"]\ndatasets = [\"*\"]\n"),
                Just("[limits]\nmax_in_flight = 0\n"),
                Just("[limits.rate]\nper_second = -1.0\nburst = 0\n"),
                Just("[[jwt]]\nissuer = \"i\"\nalgorithms = [\"RS256\"]\n"),
                Just("token_sha256 = \"zz\"\n"),
                Just("[auth]\nanonymous_roles = [\"r\"]\n"),
                Just("[routing]\nstrategy = \"hash\"\n"),
            ],
            0..6,
        ),
    ) {
        let composed: String = fields.concat();
        for candidate in [text.as_str(), composed.as_str()] {
            if let Ok(file) = toml::from_str::<PolicyFile>(candidate) {
                let _ = Policy::compile(file, None);
            }
        }
    }

    /// Any bearer credential (random text, or three base64 parts like a JWT): an identity only for
    /// the real token, otherwise UNAUTHENTICATED, never a crash.
    #[test]
    fn any_credential_is_authenticated_or_refused(
        token in "\\PC{0,200}",
        parts in proptest::collection::vec("[A-Za-z0-9_\\-]{0,60}", 3),
    ) {
        let policy = policy();
        let jwks = JwksCache::default();
        let rt = runtime();
        for candidate in [token.clone(), parts.join(".")] {
            let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {candidate}")) else {
                continue;
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            match rt.block_on(policy.authenticate(&headers, &jwks)) {
                Ok(identity) => prop_assert_eq!(candidate.as_str(), "alice-token", "{:?}", identity),
                Err(AccessError::Unauthenticated(_)) => {}
                Err(e) => prop_assert!(false, "unexpected refusal {e:?}"),
            }
        }
    }
}
