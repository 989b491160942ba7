use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, header};
use tower::Service;

use super::future::{Proof, ResponseFuture, refuse};
use super::layer::Settings;
use super::rejection::{Rejection, RejectionKind, Scheme, grpc};
use super::{CnfValidationLayer, ValidateToken};
use super::{dpop, pop};

/// Middleware that validates access tokens and their certificate binding.
///
/// Built by [`CnfValidationLayer`]; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct CnfValidation<S, V> {
    inner: S,
    validator: V,
    settings: Arc<Settings>,
}

impl<S, V> CnfValidation<S, V> {
    /// Wraps `inner`, validating with `validator`, binding required.
    pub fn new(inner: S, validator: V) -> Self {
        Self::from_parts(inner, validator, Arc::new(Settings::default()))
    }

    pub(crate) fn from_parts(inner: S, validator: V, settings: Arc<Settings>) -> Self {
        Self {
            inner,
            validator,
            settings,
        }
    }

    /// A layer; the same as [`CnfValidationLayer::new`].
    pub fn layer(validator: V) -> CnfValidationLayer<V> {
        CnfValidationLayer::new(validator)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for CnfValidation<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: ValidateToken,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, V::Future>;

    /// Always ready: the inner service is asked for readiness only once the
    /// token is verified, in the response future, so a request that waits
    /// for signing keys holds none of the inner service's capacity (a
    /// concurrency permit, a `Buffer` slot), and a refused request never
    /// takes any.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let grpc = grpc::is_grpc(&request);
        let checked = credentials(&request, &self.settings).and_then(|credentials| {
            // The proof (or the signed request) is checked before the token
            // is validated, so a bad one costs no key fetch; its binding to
            // the token and the replay check come after.
            let proof = match (credentials.scheme, credentials.proof) {
                (Scheme::Pop, _) => match &self.settings.pop {
                    Some(verifier) => Some(Proof::Pop(pop::verify(
                        verifier,
                        &self.settings,
                        &request,
                        credentials.token,
                    )?)),
                    None => None,
                },
                (_, Some(proof)) => match &self.settings.dpop {
                    Some(verifier) => Some(Proof::Dpop(dpop::verify(
                        verifier,
                        &self.settings,
                        &request,
                        proof,
                        credentials.token,
                    )?)),
                    None => None,
                },
                _ => None,
            };
            // With `PoP`, the access token is the SHR's `at`, validated
            // like a bare one.
            let token = match &proof {
                Some(Proof::Pop(shr)) => shr.at(),
                _ => credentials.token,
            };
            Ok((credentials.scheme, self.validator.validate(token), proof))
        });
        let (scheme, validation, proof) = match checked {
            Ok(checked) => checked,
            Err(rejection) => {
                return ResponseFuture::rejected(refuse(rejection, &self.settings, grpc));
            }
        };
        // A clone goes into the future, which drives it to readiness after
        // the token is verified (`ServiceExt::oneshot`'s pattern).
        let inner = self.inner.clone();
        ResponseFuture::validating(
            validation,
            request,
            inner,
            self.settings.clone(),
            scheme,
            proof,
            grpc,
        )
    }
}

/// What a request presents: its scheme, its token (for `PoP`, the signed
/// request) and, for `DPoP`, its proof header.
#[derive(Debug)]
struct Credentials<'a> {
    scheme: Scheme,
    token: &'a str,
    proof: Option<&'a HeaderValue>,
}

/// Finds the access token: `Authorization: Bearer <token>`,
/// `Authorization: mtls_pop <token>` or, where DPoP is accepted,
/// `Authorization: DPoP <token>` with exactly one `DPoP` header, or, where
/// signed HTTP requests are accepted, `Authorization: PoP <SHR>` (scheme
/// word case-insensitive), once. An SHR sent with another scheme is
/// refused.
fn credentials<'a, B>(
    request: &'a Request<B>,
    settings: &Settings,
) -> Result<Credentials<'a>, Rejection> {
    let in_query = request.uri().query().is_some_and(has_access_token_param);
    let headers = request.headers();
    let Some(value) = single_authorization(headers)? else {
        return Err(Rejection::new(
            if in_query {
                RejectionKind::TokenInQuery
            } else {
                RejectionKind::MissingCredentials
            },
            Scheme::Bearer,
        ));
    };
    let malformed = |scheme| Rejection::new(RejectionKind::MalformedAuthorization, scheme);
    // Read as bytes: the token is checked once, byte by byte, as a
    // `b64token` (ASCII), not also as a visible-ASCII header value.
    let value = value.as_bytes();
    let (word, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !word.iter().all(u8::is_ascii_graphic) {
        return Err(malformed(Scheme::Bearer));
    }
    let scheme = if word.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if word.eq_ignore_ascii_case(b"mtls_pop") {
        Scheme::MtlsPop
    } else if word.eq_ignore_ascii_case(b"dpop") && settings.dpop.is_some() {
        Scheme::Dpop
    } else if word.eq_ignore_ascii_case(b"pop") && settings.pop.is_some() {
        Scheme::Pop
    } else {
        // Another scheme (Basic, DPoP where it is not accepted, ...): no
        // credentials we understand.
        return Err(Rejection::new(
            RejectionKind::MissingCredentials,
            Scheme::Bearer,
        ));
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    if !is_b64token(token) {
        return Err(malformed(scheme));
    }
    // ASCII, as a `b64token`.
    let token = std::str::from_utf8(token).map_err(|_| malformed(scheme))?;
    if in_query {
        return Err(Rejection::new(RejectionKind::MultipleTokens, scheme));
    }
    if scheme != Scheme::Pop && pop::is_signed_request(token) {
        // Not an access token: its `at` is, and only the `PoP` scheme
        // proves the key it is bound to.
        return Err(Rejection::new(RejectionKind::SignedRequestAsToken, scheme));
    }
    let proof = if scheme == Scheme::Dpop {
        let proof = dpop::proof_header(headers).map_err(|kind| Rejection::new(kind, scheme))?;
        Some(proof.ok_or_else(|| Rejection::new(RejectionKind::MissingDpopProof, scheme))?)
    } else {
        // A `DPoP` header next to another scheme proves nothing and is
        // ignored; a DPoP-bound token is refused without its scheme.
        None
    };
    Ok(Credentials {
        scheme,
        token,
        proof,
    })
}

fn single_authorization(headers: &HeaderMap) -> Result<Option<&http::HeaderValue>, Rejection> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Rejection::new(
            RejectionKind::MultipleTokens,
            Scheme::Bearer,
        ));
    }
    Ok(first)
}

/// RFC 6750 section 2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" /
/// "~" / "+" / "/" ) *"="`.
///
/// Every byte is looked at, without branching on any: a token is hundreds
/// of bytes on every request, and the loop vectorizes.
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & is_b64token_byte(b))
}

/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`.
fn is_b64token_byte(b: u8) -> bool {
    // Setting bit 5 maps `A`-`Z` onto `a`-`z` and nothing else into them.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

fn has_access_token_param(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        percent_decode(name).as_deref() == Some(b"access_token".as_slice())
    })
}

/// Percent-decodes a query parameter name (`access%5Ftoken` is
/// `access_token` too); `None` for a malformed escape.
fn percent_decode(name: &str) -> Option<Vec<u8>> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_bytes_are_the_rfc_6750_set_exactly() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_b64token_byte(b), expected, "byte {b:#04x}");
        }
        assert!(is_b64token(b"a.b-c_d~e+f/g=="));
        for bad in [&b""[..], b"==", b"a=b", b"a b", b"a\xc3\xa9", b"a\t"] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
    }

    fn parse(values: &[&str], uri: &str) -> Result<(Scheme, String), RejectionKind> {
        parse_with(values, &[], uri, &Settings::default())
    }

    fn parse_with(
        values: &[&str],
        proofs: &[&str],
        uri: &str,
        settings: &Settings,
    ) -> Result<(Scheme, String), RejectionKind> {
        let mut builder = Request::get(uri);
        for v in values {
            builder = builder.header(header::AUTHORIZATION, *v);
        }
        for p in proofs {
            builder = builder.header(crate::proof::dpop::DPOP, *p);
        }
        let request = builder.body(()).unwrap();
        credentials(&request, settings)
            .map(|c| (c.scheme, c.token.to_owned()))
            .map_err(|r| r.kind())
    }

    #[test]
    fn the_dpop_scheme_where_accepted() {
        use RejectionKind as K;
        let dpop = CnfValidationLayer::new(())
            .accept_dpop(crate::proof::dpop::DpopVerifier::new())
            .settings()
            .clone();
        let plain = Settings::default();
        assert_eq!(
            parse_with(&["dpop abc"], &["p"], "/", &dpop),
            Ok((Scheme::Dpop, "abc".into()))
        );
        assert_eq!(
            parse_with(&["DPoP abc"], &["p"], "/", &plain),
            Err(K::MissingCredentials)
        );
        assert_eq!(
            parse_with(&["DPoP abc"], &[], "/", &dpop),
            Err(K::MissingDpopProof)
        );
        assert_eq!(
            parse_with(&["DPoP abc"], &["p", "q"], "/", &dpop),
            Err(K::MultipleDpopProofs)
        );
        assert_eq!(
            parse_with(&["DPoP a b"], &["p"], "/", &dpop),
            Err(K::MalformedAuthorization)
        );
        // A proof next to Bearer is ignored here; the token decides.
        assert_eq!(
            parse_with(&["Bearer abc"], &["p", "q"], "/", &dpop),
            Ok((Scheme::Bearer, "abc".into()))
        );
    }

    #[test]
    fn the_pop_scheme_where_accepted() {
        use RejectionKind as K;
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let pop = CnfValidationLayer::new(())
            .accept_pop(crate::proof::pop::PopVerifier::new())
            .settings()
            .clone();
        let plain = Settings::default();
        assert_eq!(
            parse_with(&["PoP a.b.c"], &[], "/", &pop),
            Ok((Scheme::Pop, "a.b.c".into()))
        );
        assert_eq!(
            parse_with(&["pop a.b.c"], &[], "/", &plain),
            Err(K::MissingCredentials)
        );
        assert_eq!(
            parse_with(&["PoP a.b.c"], &[], "/?access_token=x", &pop),
            Err(K::MultipleTokens)
        );
        // An SHR under another scheme is not an access token.
        let shr = format!(
            "{}.e30.c2ln",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"pop"}"#)
        );
        for scheme in ["Bearer", "mtls_pop"] {
            assert_eq!(
                parse_with(&[&format!("{scheme} {shr}")], &[], "/", &pop),
                Err(K::SignedRequestAsToken)
            );
            assert_eq!(
                parse_with(&[&format!("{scheme} {shr}")], &[], "/", &plain),
                Err(K::SignedRequestAsToken)
            );
        }
    }

    #[test]
    fn schemes_and_tokens() {
        use RejectionKind as K;
        assert_eq!(
            parse(&["Bearer abc.def-_~+/=="], "/"),
            Ok((Scheme::Bearer, "abc.def-_~+/==".into()))
        );
        assert_eq!(
            parse(&["bEaReR  abc"], "/"),
            Ok((Scheme::Bearer, "abc".into()))
        );
        assert_eq!(
            parse(&["MTLS_POP abc"], "/"),
            Ok((Scheme::MtlsPop, "abc".into()))
        );
        assert_eq!(parse(&[], "/"), Err(K::MissingCredentials));
        assert_eq!(
            parse(&["Basic dXNlcjpwYXNz"], "/"),
            Err(K::MissingCredentials)
        );
        assert_eq!(parse(&["Bearer"], "/"), Err(K::MalformedAuthorization));
        assert_eq!(parse(&["Bearer "], "/"), Err(K::MalformedAuthorization));
        assert_eq!(parse(&["Bearer a b"], "/"), Err(K::MalformedAuthorization));
        assert_eq!(parse(&["Bearer a,b"], "/"), Err(K::MalformedAuthorization));
        assert_eq!(parse(&["Bearer ==="], "/"), Err(K::MalformedAuthorization));
        assert_eq!(parse(&["Bearer a=b"], "/"), Err(K::MalformedAuthorization));
        assert_eq!(
            parse(&["Bearer a", "Bearer b"], "/"),
            Err(K::MultipleTokens)
        );
        assert_eq!(
            parse(&["Bearer a"], "/?x=1&access_token=b"),
            Err(K::MultipleTokens)
        );
        assert_eq!(parse(&[], "/?access_token=b"), Err(K::TokenInQuery));
        assert_eq!(parse(&[], "/?access%5Ftoken=b"), Err(K::TokenInQuery));
        assert_eq!(parse(&[], "/?%61ccess_token=b"), Err(K::TokenInQuery));
        assert_eq!(parse(&[], "/?access%5=b"), Err(K::MissingCredentials));
        assert_eq!(
            parse(&["Bearer a"], "/?not_access_token=b"),
            Ok((Scheme::Bearer, "a".into()))
        );
    }

    #[test]
    fn non_ascii_header_is_malformed() {
        let mut request = Request::new(());
        request.headers_mut().insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        assert_eq!(
            credentials(&request, &Settings::default())
                .unwrap_err()
                .kind(),
            RejectionKind::MalformedAuthorization
        );
    }

    /// What `credentials` did with the `Authorization` value before it read
    /// it as bytes (`Settings::default()`, no query, no SHR): the scheme
    /// and token it took, or none.
    fn read_as_str(value: &http::HeaderValue) -> Option<(Scheme, String)> {
        let value = value.to_str().ok()?;
        let (word, rest) = value.split_once(' ').unwrap_or((value, ""));
        let scheme = if word.eq_ignore_ascii_case("bearer") {
            Scheme::Bearer
        } else if word.eq_ignore_ascii_case("mtls_pop") {
            Scheme::MtlsPop
        } else {
            return None;
        };
        let token = rest.trim_start_matches(' ');
        let body = token.trim_end_matches('=');
        let b64token = !body.is_empty()
            && body.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
            });
        b64token.then(|| (scheme, token.to_owned()))
    }

    fn read_as_bytes(value: &http::HeaderValue) -> Result<(Scheme, String), RejectionKind> {
        let mut request = Request::new(());
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, value.clone());
        credentials(&request, &Settings::default())
            .map(|c| (c.scheme, c.token.to_owned()))
            .map_err(|r| r.kind())
    }

    /// Tabs, NUL's neighbours, obs-text, UTF-8, padding in the middle, no
    /// token, many spaces: taken or refused exactly as before, and where
    /// refused, refused for what they are.
    #[test]
    fn hostile_authorization_bytes() {
        use RejectionKind as K;
        for (value, expected) in [
            (&b"Bearer abc"[..], Ok("abc")),
            (b"Bearer     abc==", Ok("abc==")),
            (b"Bearer \xff\xfe", Err(K::MalformedAuthorization)),
            (b"Bearer abc\x80", Err(K::MalformedAuthorization)),
            (b"Bearer a\xc3\xa9", Err(K::MalformedAuthorization)),
            (b"mtls_pop \xe2\x80\x8babc", Err(K::MalformedAuthorization)),
            (b"B\xc3\xa9arer abc", Err(K::MalformedAuthorization)),
            (b"Bearer\xa0abc", Err(K::MalformedAuthorization)),
            (b"Bearer \tabc", Err(K::MalformedAuthorization)),
            (b"Bearer abc\t", Err(K::MalformedAuthorization)),
            (b"Bearer abc ", Err(K::MalformedAuthorization)),
            (b"Bearer \x01abc", Err(K::MalformedAuthorization)),
            (b"Bearer \x7fabc", Err(K::MalformedAuthorization)),
            (b"Bearer =", Err(K::MalformedAuthorization)),
            (b"Bearer =abc", Err(K::MalformedAuthorization)),
            (b"Bearer ab=c=", Err(K::MalformedAuthorization)),
            (b"Bearer ", Err(K::MalformedAuthorization)),
            (b"Bearer      ", Err(K::MalformedAuthorization)),
            (b" Bearer abc", Err(K::MissingCredentials)),
            (b"", Err(K::MissingCredentials)),
            (b" ", Err(K::MissingCredentials)),
            (b"Bearerabc", Err(K::MissingCredentials)),
        ] {
            let Ok(value) = http::HeaderValue::from_bytes(value) else {
                // Not a header value `http` lets through (NUL, DEL, ...).
                continue;
            };
            let read = read_as_bytes(&value);
            assert_eq!(
                read.as_ref()
                    .map(|(_, token)| token.as_str())
                    .map_err(|&kind| kind),
                expected,
                "{value:?}"
            );
            assert_eq!(read.ok(), read_as_str(&value), "{value:?}");
        }
        // A tab in place of the space is refused, now as malformed.
        let value = http::HeaderValue::from_static("Bearer\tabc");
        assert!(read_as_bytes(&value).is_err());
        // A long token is read in full.
        let long = format!("Bearer {}==", "a".repeat(256 * 1024));
        let value = http::HeaderValue::from_str(&long).unwrap();
        assert_eq!(read_as_bytes(&value).unwrap().1.len(), 256 * 1024 + 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Any header value: the bytes reading takes what the `str` reading
        /// took, and nothing else.
        #[test]
        fn reading_bytes_takes_what_reading_str_took(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                &b"Bearer"[..], b"bearer", b"BEARER", b"mtls_pop", b"Basic", b"DPoP",
                b" ", b"  ", b"\t", b"=", b"==", b"a", b"Z9", b"-._~+/", b",", b"\"",
                b"\x80", b"\xff", b"\xc3\xa9", b"\x01", b"\x7f", b"\x00",
            ]), 0..10)
        ) {
            if let Ok(value) = http::HeaderValue::from_bytes(&pieces.concat()) {
                proptest::prop_assert_eq!(read_as_bytes(&value).ok(), read_as_str(&value));
            }
        }
    }

    /// A request waiting for its token to be verified (a slow JWKS fetch,
    /// say) holds no permit of the inner service, so another request gets
    /// through a concurrency limit of one meanwhile.
    #[tokio::test]
    async fn a_slow_validation_holds_none_of_the_inner_capacity() {
        use std::convert::Infallible;
        use std::sync::Arc;
        use std::time::Duration;

        use tokio::sync::Notify;
        use tower::{ServiceBuilder, ServiceExt};

        use crate::validation::{TokenError, TokenErrorKind, VerifiedToken};

        let release = Arc::new(Notify::new());
        let gate = release.clone();
        let validator = move |token: &str| {
            let slow = token == "slow";
            let gate = gate.clone();
            async move {
                if slow {
                    gate.notified().await;
                }
                let claims = serde_json::json!({ "sub": "svc" });
                VerifiedToken::from_claims(claims.as_object().cloned().unwrap_or_default())
                    .map_err(|_| TokenError::new(TokenErrorKind::Other))
            }
        };
        let service = ServiceBuilder::new()
            .layer(CnfValidationLayer::new(validator).allow_unbound())
            .concurrency_limit(1)
            .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
        let request = |token: &str| {
            Request::get("/")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(())
                .unwrap()
        };

        let slow = tokio::spawn(service.clone().oneshot(request("slow")));
        tokio::task::yield_now().await;
        // Not a timing assertion: a bound on a wait that, before, never ended.
        let fast = tokio::time::timeout(
            Duration::from_secs(10),
            service.clone().oneshot(request("fast")),
        )
        .await
        .expect("the fast request waited for the slow one's validation");
        assert_eq!(fast.unwrap().status(), http::StatusCode::OK);

        release.notify_one();
        assert_eq!(slow.await.unwrap().unwrap().status(), http::StatusCode::OK);
    }
}
