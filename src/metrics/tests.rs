use std::collections::BTreeMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

use super::*;

/// The module's docs, where every name and label value must be listed.
const DOCS: &str = include_str!("mod.rs");

fn documented(word: &str) -> bool {
    DOCS.contains(&format!("`{word}`")) || DOCS.contains(&format!("\"{word}\""))
}

/// The README, whose "Metrics" table lists every label value too.
const README: &str = include_str!("../../README.md");

/// The table of the module docs that lists why validations are refused.
fn outcome_table() -> &'static str {
    let start = DOCS
        .find("The reasons of refused validations")
        .expect("the outcome table");
    let end = DOCS[start..].find("# Plugging in").expect("its end");
    &DOCS[start..start + end]
}

/// The line of `text` (a table row) that names `name`.
fn row<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|line| line.contains(name) && line.trim_start_matches("//! ").starts_with('|'))
        .unwrap_or_else(|| panic!("no table row names {name}"))
}

/// What `f` recorded, `name{k=v,...}` to its value, while what `f`
/// returns is still alive.
fn recorded<T>(f: impl FnOnce() -> T) -> BTreeMap<String, DebugValue> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _alive = ::metrics::with_local_recorder(&recorder, f);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[test]
fn names_follow_the_scheme_and_are_documented() {
    for name in NAMES {
        assert!(name.starts_with("tower_token_binding_"), "{name}");
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        assert!(
            DOCS.contains(&format!("[`{name}`]")),
            "{name} is not in the table"
        );
        assert_eq!(name.ends_with("_total"), name != POOL_CLIENTS, "{name}");
    }
    let mut unique = NAMES.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), NAMES.len());
}

#[cfg(feature = "server")]
#[test]
fn every_rejection_has_a_documented_outcome() {
    use crate::proof::dpop::DpopErrorKind as D;
    use crate::proof::pop::PopErrorKind as S;
    use crate::validation::labels::rejection_outcome;
    use crate::validation::{RejectionKind as K, TokenErrorKind as T};
    let tokens = [
        T::Malformed,
        T::WrongType,
        T::DisallowedAlgorithm,
        T::UnknownKey,
        T::BadSignature,
        T::WrongIssuer,
        T::WrongAudience,
        T::Expired,
        T::NotYetValid,
        T::MissingClaim,
        T::DuplicateMember,
        T::InvalidConfirmation,
        T::KeysUnavailable,
        T::Inactive,
        T::TokenTypeMismatch,
        T::UnexpectedShape,
        T::IntrospectionUnavailable,
        T::Other,
    ];
    let proofs = [
        D::TooLarge,
        D::Malformed,
        D::DuplicateMember,
        D::WrongType,
        D::DisallowedAlgorithm,
        D::InvalidKey,
        D::BadSignature,
        D::MissingClaim,
        D::MethodMismatch,
        D::UriMismatch,
        D::IatTooOld,
        D::IatInFuture,
        D::AthMismatch,
        D::MissingNonce,
        D::InvalidNonce,
        D::Replayed,
    ];
    let shrs = [S::Malformed, S::BadSignature, S::BodyMismatch, S::Replayed];
    let mut kinds = vec![
        K::MissingCredentials,
        K::MalformedAuthorization,
        K::MultipleTokens,
        K::TokenInQuery,
        K::NoClientCertificate,
        K::CertificateMismatch,
        K::UnsupportedConfirmation,
        K::UnboundToken,
        K::InsufficientScope,
        K::KeysUnavailable,
        K::MissingDpopProof,
        K::MultipleDpopProofs,
        K::DpopBoundAsBearer,
        K::NotDpopBound,
        K::DpopKeyMismatch,
        K::ReplayStoreUnavailable,
        K::ReplayShareExceeded,
        K::PopBoundWithoutSignedRequest,
        K::NotPopBound,
        K::PopKeyMismatch,
        K::SignedRequestAsToken,
        K::IntrospectionUnavailable,
    ];
    kinds.extend(tokens.map(K::InvalidToken));
    kinds.extend(proofs.map(K::InvalidDpopProof));
    kinds.extend(shrs.map(K::InvalidSignedRequest));
    for kind in kinds {
        let outcome = rejection_outcome(kind);
        assert!(
            outcome_table().contains(&format!("`{outcome}`")),
            "{kind:?}: `{outcome}` is not in the outcome table of the module docs"
        );
        assert!(
            row(README, "tower_token_binding_validations_total").contains(&format!("`{outcome}`")),
            "{kind:?}: `{outcome}` is not in the README's metrics table"
        );
        assert_ne!(outcome, "ok");
    }
    assert_eq!(
        rejection_outcome(K::CertificateMismatch),
        "binding_mismatch"
    );
    assert_eq!(
        rejection_outcome(K::InvalidDpopProof(D::Replayed)),
        "replayed"
    );
    assert_eq!(
        rejection_outcome(K::InvalidSignedRequest(S::Replayed)),
        "replayed"
    );
    assert_eq!(rejection_outcome(K::InvalidToken(T::Expired)), "expired");
}

#[cfg(feature = "server")]
#[test]
fn every_introspection_outcome_is_documented() {
    use Introspection as I;
    for outcome in [
        I::Active,
        I::Inactive,
        I::Unavailable,
        I::InvalidResponse,
        I::Overloaded,
        I::UnexpectedShape,
    ] {
        let label = format!("`{}`", introspection_outcome(outcome));
        assert!(
            row(DOCS, "(INTROSPECTIONS)").contains(&label),
            "{outcome:?}: {label} is not in the module docs"
        );
        assert!(
            row(README, "tower_token_binding_introspections_total").contains(&label),
            "{outcome:?}: {label} is not in the README"
        );
    }
}

#[cfg(feature = "server")]
#[test]
fn server_events_record_bounded_labels() {
    use crate::replay::ReplayErrorKind;
    use crate::validation::labels::{
        proof_label, rejection_outcome, rejection_scheme, scheme_label,
    };
    use crate::validation::{RejectionKind, Scheme};
    let rejected = |kind, scheme| rejected(rejection_outcome(kind), rejection_scheme(kind, scheme));
    let replay_check = |scheme, answer| replay_check(proof_label(scheme), answer);
    let seen = recorded(|| {
        rejected(RejectionKind::MissingCredentials, Scheme::Bearer);
        rejected(RejectionKind::CertificateMismatch, Scheme::MtlsPop);
        rejected(RejectionKind::CertificateMismatch, Scheme::MtlsPop);
        accepted(scheme_label(Scheme::Dpop), crate::ProvenBinding::None);
        validation_cache(Validator::Jwt, true);
        validation_cache(Validator::Introspection, false);
        jwks_fetch(JwksFetch::Transport);
        replay_check(Scheme::Pop, Ok(false));
        replay_check(Scheme::Dpop, Err(ReplayErrorKind::Unavailable));
        replay_check(Scheme::Dpop, Err(ReplayErrorKind::OwnerShareExceeded));
        introspection_call(Introspection::Inactive);
    });
    let count = |key: &str| match seen.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: {other:?} in {seen:?}"),
    };
    let v = VALIDATIONS;
    assert_eq!(
        count(&format!("{v}{{outcome=missing_credentials,scheme=none}}")),
        1
    );
    assert_eq!(
        count(&format!("{v}{{outcome=binding_mismatch,scheme=mtls_pop}}")),
        2
    );
    assert_eq!(count(&format!("{v}{{outcome=ok,scheme=dpop}}")), 1);
    assert_eq!(count(&format!("{ACCEPTED}{{binding=none}}")), 1);
    let c = VALIDATION_CACHE_LOOKUPS;
    assert_eq!(count(&format!("{c}{{validator=jwt,result=hit}}")), 1);
    assert_eq!(
        count(&format!("{c}{{validator=introspection,result=miss}}")),
        1
    );
    assert_eq!(count(&format!("{JWKS_FETCHES}{{outcome=transport}}")), 1);
    let r = REPLAY_CHECKS;
    assert_eq!(count(&format!("{r}{{proof=pop,result=replayed}}")), 1);
    assert_eq!(count(&format!("{r}{{proof=dpop,result=unavailable}}")), 1);
    assert_eq!(
        count(&format!("{r}{{proof=dpop,result=share_exceeded}}")),
        1
    );
    assert_eq!(count(&format!("{INTROSPECTIONS}{{outcome=inactive}}")), 1);
    assert_eq!(seen.len(), 11, "{seen:?}");
}

#[cfg(feature = "client")]
#[test]
fn client_events_record_bounded_labels() {
    use crate::BoxError;
    use crate::source::{TokenEndpointError, TokenEndpointErrorKind};
    use crate::token::endpoint_error::fetch_outcome;
    let timeout: Result<(), BoxError> = Err(Box::new(TokenEndpointError::new(
        TokenEndpointErrorKind::Timeout,
    )));
    let other: Result<(), BoxError> = Err("a closure's error".into());
    let seen = recorded(|| {
        token_fetch(fetch_outcome(&Ok::<(), BoxError>(())));
        token_fetch(fetch_outcome(&timeout));
        token_fetch(fetch_outcome(&other));
        token_cache_hit();
        token_cache_hit();
        token_cache_miss();
        token_cache_waiter();
        token_refresh_ahead();
        unbound_fallback();
        client_retry(Retry::InvalidToken);
        client_retry(Retry::DpopNonce);
        client_retry(Retry::PopNonce);
        tls_connection(true);
        tls_connection(false);
        let held = [PoolClientGauge::held(), PoolClientGauge::held()];
        drop(PoolClientGauge::held());
        drop(held);
        PoolClientGauge::held()
    });
    let get = |key: &str| {
        seen.get(key)
            .unwrap_or_else(|| panic!("{key} not in {seen:?}"))
    };
    let count = |key: &str| match get(key) {
        DebugValue::Counter(n) => *n,
        other => panic!("{key}: {other:?}"),
    };
    let f = TOKEN_FETCHES;
    assert_eq!(count(&format!("{f}{{outcome=ok}}")), 1);
    assert_eq!(count(&format!("{f}{{outcome=timeout}}")), 1);
    assert_eq!(count(&format!("{f}{{outcome=other}}")), 1);
    assert_eq!(count(&format!("{TOKEN_CACHE_LOOKUPS}{{result=hit}}")), 2);
    assert_eq!(count(&format!("{TOKEN_CACHE_LOOKUPS}{{result=miss}}")), 1);
    assert_eq!(count(&format!("{TOKEN_CACHE_WAITERS}{{}}")), 1);
    assert_eq!(count(&format!("{TOKEN_REFRESHES_AHEAD}{{}}")), 1);
    assert_eq!(count(&format!("{UNBOUND_FALLBACKS}{{}}")), 1);
    for reason in ["invalid_token", "use_dpop_nonce", "pop_nonce"] {
        assert_eq!(count(&format!("{CLIENT_RETRIES}{{reason={reason}}}")), 1);
        assert!(documented(reason));
    }
    assert_eq!(
        count(&format!("{POOL_TLS_CONNECTIONS}{{client_cert=yes}}")),
        1
    );
    assert_eq!(
        count(&format!("{POOL_TLS_CONNECTIONS}{{client_cert=no}}")),
        1
    );
    // Four held, three dropped: one left, and whatever the pools of other
    // tests running at the same time hold (the count is the process's).
    match get(&format!("{POOL_CLIENTS}{{}}")) {
        DebugValue::Gauge(held) => assert!(held.into_inner() >= 1.0, "{held}"),
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "client")]
#[test]
fn the_pool_clients_gauge_is_the_count_whatever_the_recorder_saw() {
    let gauge = |seen: &BTreeMap<String, DebugValue>| match seen.get(&format!("{POOL_CLIENTS}{{}}"))
    {
        Some(DebugValue::Gauge(value)) => value.into_inner(),
        other => panic!("{other:?} in {seen:?}"),
    };
    let held = ClientsHeld::new();
    // Two counted in before any recorder...
    assert_eq!(held.change(1), 1);
    assert_eq!(held.change(1), 2);
    // ...one counted out under a recorder: it sees the one left, not -1.
    let seen = recorded(|| held.change(-1));
    assert_eq!(gauge(&seen), 1.0);
    // Another recorder, another change: the count again.
    let seen = recorded(|| {
        held.change(1);
        held.change(-1);
        held.change(-1)
    });
    assert_eq!(gauge(&seen), 0.0);
}

#[cfg(feature = "client")]
#[test]
fn every_token_endpoint_error_has_a_documented_outcome() {
    use crate::BoxError;
    use crate::source::{TokenEndpointError, TokenEndpointErrorKind as K};
    use crate::token::endpoint_error::fetch_outcome;
    for kind in [
        K::OAuth,
        K::Status,
        K::InvalidResponse,
        K::TokenType,
        K::CertificateMismatch,
        K::KeyMismatch,
        K::Proof,
        K::Timeout,
        K::Transport,
        K::Discovery,
    ] {
        let result: Result<(), BoxError> = Err(Box::new(TokenEndpointError::new(kind)));
        let outcome = fetch_outcome(&result);
        assert!(
            documented(outcome),
            "{kind:?}: `{outcome}` is not documented"
        );
    }
}

#[cfg(feature = "client")]
#[test]
fn describe_gives_help_texts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    ::metrics::with_local_recorder(&recorder, || {
        describe();
        token_cache_hit();
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let [(key, _, description, _)] = snapshot.as_slice() else {
        panic!("{snapshot:?}");
    };
    assert_eq!(key.key().name(), TOKEN_CACHE_LOOKUPS);
    assert!(
        description
            .as_ref()
            .is_some_and(|d| d.contains("hit or miss"))
    );
}
