//! The server's checks, case by case, and round trips with the client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::proof::jws::{self, encode_segment};
use crate::proof::verify::ProofError as _;
use crate::proof::{Algorithm, ProofKey};
use crate::replay::MemoryReplayStore;

const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const URI: &str = "https://api.example/resource";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn jwk_value(key: &ProofKey) -> Value {
    serde_json::from_str(key.public_jwk().as_json()).unwrap()
}

fn header(key: &ProofKey) -> Value {
    json!({ "typ": "dpop+jwt", "alg": key.algorithm().as_str(), "jwk": jwk_value(key) })
}

fn claims() -> Value {
    json!({
        "jti": "e1j3V_bKic8-LAEB",
        "htm": "GET",
        "htu": URI,
        "iat": secs(now()),
        "ath": access_token_hash(TOKEN),
    })
}

/// A proof of `header` and `claims` (JSON text), signed by `key`.
fn sign_raw(key: &ProofKey, header: &str, claims: &str) -> String {
    jws::sign(key, &encode_segment(header.as_bytes()), claims.as_bytes()).unwrap()
}

fn sign(key: &ProofKey, header: &Value, claims: &Value) -> String {
    sign_raw(key, &header.to_string(), &claims.to_string())
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().unwrap().remove(name);
    value
}

fn verify(
    verifier: &DpopVerifier,
    proof: &str,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> Result<VerifiedDpopProof, DpopError> {
    verifier.verify(proof, &method, &uri.parse::<Uri>().unwrap(), token, now())
}

#[test]
fn rfc9449_ath_vector() {
    assert_eq!(
        access_token_hash(TOKEN),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn round_trips_for_every_key_type() {
    let verifier = DpopVerifier::builder()
        .algorithms([
            Algorithm::Es256,
            Algorithm::Es384,
            Algorithm::Es512,
            Algorithm::Ps256,
            Algorithm::Rs256,
            Algorithm::EdDsa,
        ])
        .build();
    for alg in [
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Es512,
        Algorithm::EdDsa,
        Algorithm::Ps256,
        Algorithm::Rs256,
    ] {
        let proofs = DpopProofs::new(ProofKey::generate(alg).unwrap());
        let uri: Uri = "https://API.example:443/orders/1?expand=all"
            .parse()
            .unwrap();
        let proof = proofs
            .proof_at(&Method::DELETE, &uri, Some(TOKEN), None, now())
            .unwrap();
        let request: Uri = "https://api.example/orders/1".parse().unwrap();
        let verified = verifier
            .verify(&proof, &Method::DELETE, &request, Some(TOKEN), now())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(verified.algorithm(), alg);
        assert_eq!(verified.jkt(), proofs.thumbprint());
        assert!(verified.is_bound_to(&proofs.thumbprint().to_string()));
        assert_eq!(verified.jti().len(), 22);
        assert_eq!(verified.iat(), now());
        assert_eq!(
            verified.replay_expires_at(),
            now() + Duration::from_secs(61)
        );
        // Token endpoint: no token, no ath.
        let proof = proofs
            .proof_at(&Method::POST, &uri, None, None, now())
            .unwrap();
        verifier
            .verify(&proof, &Method::POST, &request, None, now())
            .unwrap();
    }
}

/// One row of the table: a proof, the request it comes with, the outcome.
struct Case {
    name: &'static str,
    proof: String,
    method: Method,
    uri: &'static str,
    token: Option<&'static str>,
    want: Result<(), (DpopErrorKind, Option<&'static str>)>,
}

/// A GET of [`URI`] with [`TOKEN`], expected to pass.
fn case(name: &'static str, proof: String) -> Case {
    Case {
        name,
        proof,
        method: Method::GET,
        uri: URI,
        token: Some(TOKEN),
        want: Ok(()),
    }
}

impl Case {
    fn method(self, method: Method) -> Self {
        Self { method, ..self }
    }
    fn uri(self, uri: &'static str) -> Self {
        Self { uri, ..self }
    }
    fn token(self, token: Option<&'static str>) -> Self {
        Self { token, ..self }
    }
    fn fails(self, kind: DpopErrorKind) -> Self {
        let want = Err((kind, None));
        Self { want, ..self }
    }
    fn lacks(self, claim: &'static str) -> Self {
        let want = Err((DpopErrorKind::MissingClaim, Some(claim)));
        Self { want, ..self }
    }
}

#[test]
fn each_check_refuses_its_case() {
    use DpopErrorKind as K;
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let other = ProofKey::generate(Algorithm::Es256).unwrap();
    let ed = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let es512 = ProofKey::generate(Algorithm::Es512).unwrap();
    let (h, c) = (header(&key), claims());
    let now = secs(now());
    let good = sign(&key, &h, &c);
    // Proofs of the good header and claims with one member changed or gone.
    let claim = |name: &str, value: Value| sign(&key, &h, &with(c.clone(), name, value));
    let no_claim = |name: &str| sign(&key, &h, &without(c.clone(), name));
    let head = |name: &str, value: Value| sign(&key, &with(h.clone(), name, value), &c);
    let no_head = |name: &str| sign(&key, &without(h.clone(), name), &c);
    // Unsigned or with a made-up signature.
    let forged = |alg: &str, signature: &str| {
        let header = with(h.clone(), "alg", json!(alg)).to_string();
        let claims = c.to_string();
        let (header, claims) = (
            encode_segment(header.as_bytes()),
            encode_segment(claims.as_bytes()),
        );
        format!("{header}.{claims}.{signature}")
    };
    let mut bad_signature = good.clone();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'Q' } else { 'A' });
    let jwk_text = key.public_jwk().as_json().to_owned();
    let twice_kty = jwk_text.replacen(r#""kty":"EC""#, r#""kty":"EC","kty":"EC""#, 1);
    let claims_text = c.to_string();
    let raw_header = |jwk: &str, alg_twice: bool| {
        let alg = if alg_twice {
            r#""alg":"ES256","alg":"ES256""#
        } else {
            r#""alg":"ES256""#
        };
        sign_raw(
            &key,
            &format!(r#"{{"typ":"dpop+jwt",{alg},"jwk":{jwk}}}"#),
            &claims_text,
        )
    };
    let twice_htu = claims_text.replacen('{', r#"{"htu":"https://evil.example/","#, 1);

    let rows = [
        case("valid", good.clone()),
        case("query ignored", good.clone()).uri("https://api.example/resource?a=b"),
        case("default port", good.clone()).uri("https://api.example:443/resource"),
        case(
            "host case, fragment",
            claim("htu", json!("https://API.EXAMPLE/resource#x")),
        ),
        case("float iat", claim("iat", json!(now as f64 + 0.5))),
        case("iat at the window's edge", claim("iat", json!(now - 60))),
        case("iat ahead within skew", claim("iat", json!(now + 5))),
        case("no token, ath ignored", good.clone()).token(None),
        case("other method", good.clone())
            .method(Method::POST)
            .fails(K::MethodMismatch),
        case("method case", claim("htm", json!("get"))).fails(K::MethodMismatch),
        case("other path", good.clone())
            .uri("https://api.example/other")
            .fails(K::UriMismatch),
        case("other host", good.clone())
            .uri("https://evil.example/resource")
            .fails(K::UriMismatch),
        case("other port", good.clone())
            .uri("https://api.example:8443/resource")
            .fails(K::UriMismatch),
        case("other scheme", good.clone())
            .uri("http://api.example/resource")
            .fails(K::UriMismatch),
        case("relative request URI", good.clone())
            .uri("/resource")
            .fails(K::UriMismatch),
        case("htu relative", claim("htu", json!("/resource"))).fails(K::UriMismatch),
        case("iat too old", claim("iat", json!(now - 61))).fails(K::IatTooOld),
        case("iat too new", claim("iat", json!(now + 6))).fails(K::IatInFuture),
        case("iat huge", claim("iat", json!(u64::MAX))).fails(K::IatInFuture),
        case("iat huge float", claim("iat", json!(1e300))).fails(K::IatInFuture),
        case("iat negative", claim("iat", json!(-1))).lacks("iat"),
        case("iat a string", claim("iat", json!(now.to_string()))).lacks("iat"),
        case("iat missing", no_claim("iat")).lacks("iat"),
        case("ath of another token", good.clone())
            .token(Some("other"))
            .fails(K::AthMismatch),
        case("ath missing", no_claim("ath")).lacks("ath"),
        case("typ JWT", head("typ", json!("JWT"))).fails(K::WrongType),
        case("typ in capitals", head("typ", json!("DPOP+JWT"))).fails(K::WrongType),
        case("typ missing", no_head("typ")).fails(K::WrongType),
        case("alg none", forged("none", "")).fails(K::DisallowedAlgorithm),
        case("alg HS256", forged("HS256", "AAAA")).fails(K::DisallowedAlgorithm),
        case("alg not allowed", sign(&es512, &header(&es512), &c)).fails(K::DisallowedAlgorithm),
        case("alg does not fit jwk", head("jwk", jwk_value(&ed))).fails(K::InvalidKey),
        case(
            "private d in jwk",
            head("jwk", with(jwk_value(&key), "d", json!("AAAA"))),
        )
        .fails(K::InvalidKey),
        case(
            "symmetric jwk",
            head("jwk", json!({"kty": "oct", "k": "c2VjcmV0"})),
        )
        .fails(K::InvalidKey),
        case("jwk missing", no_head("jwk")).fails(K::InvalidKey),
        case("jwk not an object", head("jwk", json!(jwk_text))).fails(K::InvalidKey),
        case("jwk of another key", head("jwk", jwk_value(&other))).fails(K::BadSignature),
        case("bad signature", bad_signature).fails(K::BadSignature),
        case("alg twice", raw_header(&jwk_text, true)).fails(K::DuplicateMember),
        case("kty twice in jwk", raw_header(&twice_kty, false)).fails(K::DuplicateMember),
        case("htu twice", sign_raw(&key, &h.to_string(), &twice_htu)).fails(K::DuplicateMember),
        case("oversized", claim("pad", json!("x".repeat(4096)))).fails(K::TooLarge),
        case("crit", head("crit", json!(["exp"]))).fails(K::Malformed),
        case(
            "claims not an object",
            sign_raw(&key, &h.to_string(), "[1]"),
        )
        .fails(K::Malformed),
        case("two segments", "a.b".to_owned()).fails(K::Malformed),
        case("empty", String::new()).fails(K::Malformed),
        case("jti missing", no_claim("jti")).lacks("jti"),
        case("jti empty", claim("jti", json!(""))).lacks("jti"),
        case("jti too long", claim("jti", json!("j".repeat(257)))).lacks("jti"),
        case("jti a number", claim("jti", json!(7))).lacks("jti"),
        case("htm missing", no_claim("htm")).lacks("htm"),
        case("htu missing", no_claim("htu")).lacks("htu"),
    ];
    let verifier = DpopVerifier::new();
    for row in rows {
        let got = verify(&verifier, &row.proof, row.method, row.uri, row.token)
            .map(|_| ())
            .map_err(|e| {
                assert_eq!(e.error_code(), "invalid_dpop_proof", "{}", row.name);
                (e.kind(), e.claim())
            });
        assert_eq!(got, row.want, "{}", row.name);
    }
}

#[test]
fn descriptions_are_fixed_text() {
    let err = DpopError::missing_claim("htu").with_detail("secret detail");
    assert_eq!(err.description(), "the DPoP proof lacks a valid htu claim");
    assert!(!err.description().contains("secret"));
    assert!(err.to_string().contains("secret detail"));
    assert!(!err.is_nonce_error());
    let err = DpopError::new(DpopErrorKind::MissingNonce);
    assert_eq!(err.error_code(), "use_dpop_nonce");
    assert!(err.is_nonce_error());
}

#[test]
fn nonces_when_required() {
    let nonces = StatelessNonces::new(&[9; 32]).unwrap();
    let verifier = DpopVerifier::builder().nonces(nonces.clone()).build();
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let h = header(&key);
    let current = nonces.current(now());
    let previous = nonces.current(now() - Duration::from_secs(60));
    let stale = nonces.current(now() - Duration::from_secs(120));
    let forged = StatelessNonces::new(&[8; 32]).unwrap().current(now());
    for (name, nonce, want) in [
        ("current", Some(json!(current)), None),
        ("previous step", Some(json!(previous)), None),
        ("missing", None, Some(DpopErrorKind::MissingNonce)),
        (
            "stale",
            Some(json!(stale)),
            Some(DpopErrorKind::InvalidNonce),
        ),
        (
            "forged",
            Some(json!(forged)),
            Some(DpopErrorKind::InvalidNonce),
        ),
        (
            "not a string",
            Some(json!(1)),
            Some(DpopErrorKind::InvalidNonce),
        ),
    ] {
        let c = match nonce {
            Some(nonce) => with(claims(), "nonce", nonce),
            None => claims(),
        };
        let got = verify(
            &verifier,
            &sign(&key, &h, &c),
            Method::GET,
            URI,
            Some(TOKEN),
        );
        match want {
            None => assert!(got.is_ok(), "{name}: {got:?}"),
            Some(kind) => {
                let err = got.unwrap_err();
                assert_eq!(err.kind(), kind, "{name}");
                assert_eq!(err.error_code(), "use_dpop_nonce", "{name}");
            }
        }
    }
    // Other faults come first: a wrong method is not a nonce problem.
    let err = verify(
        &verifier,
        &sign(&key, &h, &claims()),
        Method::PUT,
        URI,
        Some(TOKEN),
    )
    .unwrap_err();
    assert_eq!(err.kind(), DpopErrorKind::MethodMismatch);

    // The client side: the nonce the server sent goes into the next proof.
    let proofs = DpopProofs::new(key);
    let uri: Uri = URI.parse().unwrap();
    assert!(proofs.nonces().remember(&uri, &current));
    let nonce = proofs.nonces().get(&uri);
    let proof = proofs
        .proof_at(&Method::GET, &uri, Some(TOKEN), nonce.as_deref(), now())
        .unwrap();
    verifier
        .verify(&proof, &Method::GET, &uri, Some(TOKEN), now())
        .unwrap();
}

#[test]
fn cnf_jkt_binding() {
    let key = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let other = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let verified = verify(
        &DpopVerifier::new(),
        &sign(&key, &header(&key), &claims()),
        Method::GET,
        URI,
        Some(TOKEN),
    )
    .unwrap();
    assert!(verified.is_bound_to(&key.thumbprint().to_string()));
    assert!(!verified.is_bound_to(&other.thumbprint().to_string()));
    assert!(!verified.is_bound_to(""));
    assert!(!verified.is_bound_to(&format!("{}=", key.thumbprint())));
}

#[tokio::test]
async fn a_replayed_proof_is_caught_by_the_store() {
    use crate::replay::ReplayStore as _;
    let store = MemoryReplayStore::new();
    let verifier = DpopVerifier::new();
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let uri: Uri = URI.parse().unwrap();
    let now = SystemTime::now();
    let proof = proofs
        .proof_at(&Method::GET, &uri, Some(TOKEN), None, now)
        .unwrap();
    let first = verifier
        .verify(&proof, &Method::GET, &uri, Some(TOKEN), now)
        .unwrap();
    assert!(
        store
            .insert_if_absent(first.replay_key(), first.replay_expires_at())
            .await
            .unwrap()
    );
    // The verifier is pure: the same proof passes it again...
    let again = verifier
        .verify(&proof, &Method::GET, &uri, Some(TOKEN), now)
        .unwrap();
    assert_eq!(again.replay_key(), first.replay_key());
    // ...and the store refuses it.
    assert!(
        !store
            .insert_if_absent(again.replay_key(), again.replay_expires_at())
            .await
            .unwrap()
    );
    // A fresh proof of the same key is new.
    let fresh = proofs
        .proof_at(&Method::GET, &uri, Some(TOKEN), None, now)
        .unwrap();
    let fresh = verifier
        .verify(&fresh, &Method::GET, &uri, Some(TOKEN), now)
        .unwrap();
    assert!(
        store
            .insert_if_absent(fresh.replay_key(), fresh.replay_expires_at())
            .await
            .unwrap()
    );
}

fn arbitrary_proof() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        "[A-Za-z0-9_-]{0,64}",
        any::<Vec<u8>>().prop_map(|b| encode_segment(&b)),
        "\\PC{0,40}".prop_map(|s| encode_segment(s.as_bytes())),
        Just(encode_segment(br#"{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}"#)),
        Just(encode_segment(br#"{"jti":"a","htm":"GET","htu":"https://api.example/resource","iat":1e400}"#)),
    ];
    prop_oneof![
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "\\PC{0,200}",
        proptest::collection::vec(segment, 0..5).prop_map(|s| s.join(".")),
    ]
}

proptest! {
    #[test]
    fn arbitrary_proofs_never_panic(proof in arbitrary_proof(), method in "[A-Z]{1,8}", path in "/[a-z%./]{0,20}") {
        let verifier = DpopVerifier::builder()
            .nonces(StatelessNonces::new(&[1; 32]).unwrap())
            .build();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri = format!("https://api.example{path}").parse::<Uri>().unwrap_or_else(|_| URI.parse().unwrap());
        let result = verifier.verify(&proof, &method, &uri, Some(TOKEN), SystemTime::now());
        prop_assert!(result.is_err());
    }
}
