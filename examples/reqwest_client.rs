//! reqwest with bound tokens, both halves in one process: a reqwest client
//! whose calls carry a certificate-bound token (over a connection that
//! presents the certificate), one whose calls carry a DPoP-bound token and
//! a fresh proof, and the certificate-bound token stolen and sent by a
//! plain reqwest client: refused.
//!
//! ```text
//! cargo run --example reqwest_client
//! ```
//!
//! Each client comes from the settings a `BoundClient` takes. The DPoP
//! client is one line (`BoundClientBuilder::build_reqwest`): a
//! `reqwest_middleware::ClientWithMiddleware`, used as reqwest is. The
//! certificate-bound client takes the middleware alone
//! (`build_reqwest_middleware`) into a chain of its own, to keep a handle on
//! its token cache: the theft below needs the token. The
//! resource server is `CnfValidationLayer` over TLS, accepting
//! certificate-bound and DPoP-bound tokens, and the embedded test issuer
//! issues the tokens. It exits 0 only if every call ends as it says.

use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::ServiceBuilder;
use tower_token_binding::binding::Scheme;
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::BoxError;
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, VerifiedToken,
};
use tower_token_binding::{BoundClient, ProvenBinding};

const SECRET: &str = "s3cret";

/// The API: says who called and what bound the token to them.
async fn orders(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = request.extensions().get::<VerifiedToken>();
    let client = token.and_then(|t| t.client_id()).unwrap_or_default();
    let proven = match token.map(VerifiedToken::binding) {
        Some(ProvenBinding::Certificate(x5t)) => format!("certificate {x5t}"),
        Some(ProvenBinding::Dpop(jkt)) => format!("DPoP key {jkt}"),
        Some(other) => format!("{:?}", other.binding()),
        None => "nothing".to_owned(),
    };
    let body = format!("orders for {client}, bound by {proven}");
    Ok(Response::new(Full::new(Bytes::from(body))))
}

/// Prints how a call ended; returns whether it ended as `expected`.
async fn report(
    what: &str,
    expected: StatusCode,
    result: Result<reqwest::Response, reqwest_middleware::Error>,
) -> bool {
    match result {
        Ok(response) => {
            let status = response.status();
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.text().await.unwrap_or_default();
            match challenge {
                Some(challenge) => {
                    println!("{what}: {status}; www-authenticate: {challenge}")
                }
                None => println!("{what}: {status}, the server says {body:?}"),
            }
            status == expected
        }
        Err(e) => {
            println!("{what}: failed: {e}");
            false
        }
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode, BoxError> {
    let pki = TestPki::new()?;
    // "svc" authenticates with its certificate, "reports" with a secret.
    let issuer = TestIssuer::builder()
        .client_secret("reports", SECRET)
        .start(&pki)
        .await?;

    // The resource server: certificate-bound and DPoP-bound tokens, over TLS.
    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(JwksSource::remote(&issuer.jwks_uri())?.root_store(pki.root_store()))
        .build()?;
    let service = ServiceBuilder::new()
        .layer(CnfValidationLayer::new(validator).accept_dpop(DpopVerifier::new()))
        .service_fn(orders);
    let tls = pki.server_config(Arc::new(AnyClientCertVerifier::optional()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}/orders", listener.local_addr()?.port());
    tokio::spawn(server::serve(listener, tls, service).into_future());
    println!("API on {url}");

    // A reqwest client with certificate-bound tokens: the middleware, kept
    // for its token cache, in a chain over a reqwest client of our own.
    let identity = pki.client_cert("svc.example")?.identity()?;
    let middleware = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(identity.clone())
        .root_store(pki.root_store())
        .build_reqwest_middleware()?;
    let cache = middleware.cache().cloned();
    // Our own client follows no redirect: one that did would carry a DPoP
    // proof on to wherever a redirect points (this chain's certificate-bound
    // requests go through the middleware's own clients, which follow none).
    let own = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mtls = reqwest_middleware::ClientBuilder::new(own)
        .with(middleware)
        .build();
    let mut ok = report(
        "certificate-bound call",
        StatusCode::OK,
        mtls.get(&url).send().await,
    )
    .await;

    // The same with DPoP, a key instead of a certificate, in one line.
    let dpop = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("reports")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
        .build_reqwest()?;
    ok &= report(
        "DPoP-bound call",
        StatusCode::OK,
        dpop.get(&url).send().await,
    )
    .await;

    // The certificate-bound token, stolen, sent by a client without the
    // certificate.
    let stolen = match &cache {
        Some(cache) => cache
            .get()
            .await?
            .token()
            .access_token()
            .secret()
            .to_owned(),
        None => return Err("the client has no token cache".into()),
    };
    let thief = BoundClient::builder()
        .token_source(move || {
            let stolen = stolen.clone();
            async move { Ok(tower_token_binding::token::Token::new(stolen)) }
        })
        .scheme(Scheme::Bearer)
        .root_store(pki.root_store())
        .build_reqwest()?;
    ok &= report(
        "stolen token",
        StatusCode::UNAUTHORIZED,
        thief.get(&url).send().await,
    )
    .await;

    Ok(if ok {
        println!("every step behaved as expected");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
