//! Unit tests of rejections: statuses, `WWW-Authenticate` challenges,
//! descriptions and the error chain.

use http::StatusCode;

use super::*;
use crate::proof::dpop::DpopErrorKind;
use crate::proof::pop::PopErrorKind;

fn www(rejection: Rejection, terse: bool, scope: Option<&str>) -> Option<String> {
    let settings = Settings {
        terse,
        scope_param: scope.map(str::to_owned),
        ..Settings::default()
    };
    www_with(rejection, &settings)
}

fn www_with(rejection: Rejection, settings: &Settings) -> Option<String> {
    let response: Response<()> = rejection.into_response(settings);
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[test]
fn challenges() {
    let r = |k| Rejection::new(k, Scheme::Bearer);
    assert_eq!(
        www(r(RejectionKind::MissingCredentials), false, None).unwrap(),
        "Bearer"
    );
    assert_eq!(
        www(r(RejectionKind::CertificateMismatch), true, None).unwrap(),
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        www(r(RejectionKind::UnboundToken), false, None).unwrap(),
        "Bearer error=\"invalid_token\", error_description=\"the access token is not bound\""
    );
    assert_eq!(
        www(r(RejectionKind::InsufficientScope), true, Some("a \"b\"")).unwrap(),
        "Bearer error=\"insufficient_scope\", scope=\"a \\\"b\\\"\""
    );
    assert_eq!(www(r(RejectionKind::KeysUnavailable), false, None), None);
    assert_eq!(
        www(r(RejectionKind::IntrospectionUnavailable), false, None),
        None
    );
    let unavailable = Rejection::token(
        TokenError::new(TokenErrorKind::IntrospectionUnavailable),
        Scheme::Bearer,
    );
    assert_eq!(unavailable.kind(), RejectionKind::IntrospectionUnavailable);
    let response: Response<()> = unavailable.into_response(&Settings::default());
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    let inactive = Rejection::token(TokenError::new(TokenErrorKind::Inactive), Scheme::Bearer);
    assert_eq!(
        www_with(inactive, &Settings::default()).unwrap(),
        "Bearer error=\"invalid_token\", error_description=\"the access token is not active\""
    );
    let pop = Rejection::new(RejectionKind::NoClientCertificate, Scheme::MtlsPop);
    assert!(
        www(pop, true, None)
            .unwrap()
            .starts_with("mtls_pop error=\"invalid_token\"")
    );
}

#[test]
fn dpop_challenges() {
    use crate::proof::Algorithm;
    use crate::proof::dpop::DpopVerifier;
    let verifier = DpopVerifier::builder()
        .algorithms([Algorithm::Es256, Algorithm::EdDsa])
        .build();
    let both = Settings {
        terse: true,
        dpop: Some(verifier.clone()),
        ..Settings::default()
    };
    let dpop_only = Settings {
        no_certificates: true,
        ..both.clone()
    };
    let missing = |s| {
        www_with(
            Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer),
            s,
        )
    };
    assert_eq!(missing(&both).unwrap(), "Bearer, DPoP algs=\"ES256 EdDSA\"");
    assert_eq!(missing(&dpop_only).unwrap(), "DPoP algs=\"ES256 EdDSA\"");

    let proof = |kind| Rejection::dpop(DpopError::new(kind), Scheme::Dpop);
    assert_eq!(
        www_with(proof(DpopErrorKind::BadSignature), &both).unwrap(),
        "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA\", Bearer"
    );
    assert_eq!(
        www_with(proof(DpopErrorKind::MissingNonce), &dpop_only).unwrap(),
        "DPoP error=\"use_dpop_nonce\", algs=\"ES256 EdDSA\""
    );
    let bearer = Rejection::new(RejectionKind::DpopBoundAsBearer, Scheme::Bearer);
    assert_eq!(
        www_with(bearer, &both).unwrap(),
        "Bearer error=\"invalid_token\", DPoP algs=\"ES256 EdDSA\""
    );
    let verbose = Settings {
        terse: false,
        ..both.clone()
    };
    let mismatch = Rejection::new(RejectionKind::DpopKeyMismatch, Scheme::Dpop);
    assert_eq!(
        www_with(mismatch, &verbose).unwrap(),
        "DPoP error=\"invalid_token\", error_description=\"the access token is bound to another key than the DPoP proof\", algs=\"ES256 EdDSA\", Bearer"
    );
    assert_eq!(
        RejectionKind::InvalidDpopProof(DpopErrorKind::MissingClaim).description(),
        "the DPoP proof lacks a required claim"
    );

    // A failing store: 503, Retry-After, no challenge.
    let failed = Rejection::replay_store(
        ReplayError::new(crate::replay::ReplayErrorKind::Unavailable),
        Scheme::Dpop,
    );
    assert!(failed.to_string().contains("unavailable"));
    assert!(std::error::Error::source(&failed).is_some());
    let response: Response<()> = failed.into_response(&both);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());

    // A key over its share: 429 for that client alone, Retry-After, no
    // challenge (its credentials are fine).
    let flooding = Rejection::replay_store(
        ReplayError::new(crate::replay::ReplayErrorKind::OwnerShareExceeded),
        Scheme::Dpop,
    );
    assert_eq!(flooding.kind(), RejectionKind::ReplayShareExceeded);
    assert_eq!(
        flooding.to_string(),
        "too many proofs by this key are remembered: retry later: \
         the proof key holds its share of the replay store"
    );
    assert_eq!(RejectionKind::ReplayShareExceeded.error_code(), None);
    let response: Response<()> = flooding.into_response(&both);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert!(response.extensions().get::<Rejection>().is_some());
}

#[test]
fn pop_challenges() {
    use crate::proof::dpop::DpopVerifier;
    use crate::proof::pop::PopVerifier;
    let all = Settings {
        terse: true,
        dpop: Some(
            DpopVerifier::builder()
                .algorithms([crate::proof::Algorithm::Es256])
                .build(),
        ),
        pop: Some(PopVerifier::new()),
        ..Settings::default()
    };
    let missing = Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer);
    assert_eq!(
        www_with(missing, &all).unwrap(),
        "Bearer, DPoP algs=\"ES256\", PoP"
    );
    let pop_only = Settings {
        no_certificates: true,
        dpop: None,
        ..all.clone()
    };
    let missing = Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer);
    assert_eq!(www_with(missing, &pop_only).unwrap(), "PoP");

    // The PoP challenge carries the error, with the check that failed.
    let verbose = Settings {
        terse: false,
        ..all.clone()
    };
    let stale = Rejection::pop(PopError::new(PopErrorKind::TooOld));
    assert_eq!(
        stale.kind(),
        RejectionKind::InvalidSignedRequest(PopErrorKind::TooOld)
    );
    assert!(stale.pop_error().is_some());
    assert_eq!(
        www_with(stale, &verbose).unwrap(),
        "PoP error=\"invalid_token\", error_description=\"the PoP SHR ts is too old\", Bearer, DPoP algs=\"ES256\""
    );
    let mismatch = Rejection::new(RejectionKind::PopKeyMismatch, Scheme::Pop);
    assert!(
        www_with(mismatch, &verbose)
            .unwrap()
            .starts_with("PoP error=\"invalid_token\", error_description=\"the access token is bound to another key than the PoP SHR")
    );
    // A PoP-bound token as a bearer token: refused in the Bearer
    // challenge, PoP still offered.
    let downgrade = Rejection::new(RejectionKind::PopBoundWithoutSignedRequest, Scheme::Bearer);
    assert_eq!(
        www_with(downgrade, &all).unwrap(),
        "Bearer error=\"invalid_token\", DPoP algs=\"ES256\", PoP"
    );
    for kind in [
        RejectionKind::InvalidSignedRequest(PopErrorKind::Replayed),
        RejectionKind::PopBoundWithoutSignedRequest,
        RejectionKind::NotPopBound,
        RejectionKind::PopKeyMismatch,
        RejectionKind::SignedRequestAsToken,
    ] {
        assert_eq!(kind.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
        assert_eq!(kind.error_code(), Some("invalid_token"), "{kind:?}");
        assert!(kind.description().contains("PoP"), "{kind:?}");
    }
    let failed = Rejection::replay_store(
        ReplayError::new(crate::replay::ReplayErrorKind::Unavailable),
        Scheme::Pop,
    );
    let response: Response<()> = failed.into_response(&all);
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}

#[test]
fn a_missing_claim_is_named_and_descriptions_stay_ascii() {
    let missing = Rejection::token(TokenError::missing_claim("jti"), Scheme::Bearer);
    assert_eq!(
        www(missing, false, None).unwrap(),
        "Bearer error=\"invalid_token\", error_description=\"the access token lacks a valid jti claim\""
    );
    let odd = Rejection::token(TokenError::missing_claim("caf\u{e9}\n"), Scheme::Bearer);
    assert!(www(odd, false, None).unwrap().contains("valid caf?? claim"));
    let terse = Rejection::token(TokenError::missing_claim("jti"), Scheme::Bearer);
    assert_eq!(
        www(terse, true, None).unwrap(),
        "Bearer error=\"invalid_token\""
    );
}
