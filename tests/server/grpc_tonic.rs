//! gRPC through both layers, with tonic: tonic's generic client over
//! `TokenBindingLayer` and `MtlsClientPool` (HTTP/2), tonic's unary server
//! behind `CnfValidationLayer`, served over real TLS on loopback. A
//! certificate-bound call, a DPoP-bound call and a PoP call (a signed HTTP
//! request) succeed; a stolen token
//! comes back to the tonic client as `UNAUTHENTICATED`, with the
//! challenge in its metadata. No code generation: a byte codec stands in
//! for protobuf.
#![cfg(feature = "test-util")]

use crate::support;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::UnaryService;
use tonic::{Code, Status};
use tower::{Service, ServiceBuilder};
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::proof::pop::PopVerifier;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::server::{self, AnyClientCertVerifier, PeerCertificate};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{BoxError, StaticToken, Token, TokenSource as _};
use tower_token_binding::validation::{CnfValidationLayer, VerifiedToken};
use tower_token_binding::{ClientIdentity, TokenBindingLayer};

const SECRET: &str = "s3cret";

/// Messages as bytes, unchanged.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/test.Greeter/Hello`: greets the client the verified token names.
struct Hello;

impl UnaryService<Bytes> for Hello {
    type Response = Bytes;
    type Future = Ready<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let client = request
            .extensions()
            .get::<VerifiedToken>()
            .and_then(|token| token.client_id().map(str::to_owned))
            .unwrap_or_else(|| "nobody".to_owned());
        let message = String::from_utf8_lossy(request.get_ref()).into_owned();
        ready(Ok(tonic::Response::new(Bytes::from(format!(
            "{message}, {client}"
        )))))
    }
}

/// The gRPC server's one route, as a tower service.
#[derive(Clone)]
struct Greeter;

impl<B> Service<http::Request<B>> for Greeter
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            if request.uri().path() != "/test.Greeter/Hello" {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            Ok(tonic::server::Grpc::new(Raw).unary(Hello, request).await)
        })
    }
}

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    origin: http::Uri,
}

/// The issuer, and the greeter behind `CnfValidationLayer` (certificates,
/// DPoP and PoP accepted) over TLS.
async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("dpop-svc", SECRET)
        .client_secret("pop-svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let layer = CnfValidationLayer::new(support::jwt_validator(
        &pki,
        &issuer,
        Duration::from_secs(3600),
    ))
    .accept_dpop(DpopVerifier::new())
    .accept_pop(PopVerifier::new());
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = ServiceBuilder::new().layer(layer).service(Greeter);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Setup {
        pki,
        issuer,
        origin: format!("https://localhost:{port}").parse().unwrap(),
    }
}

/// An HTTP/2 pool for gRPC bodies.
fn pool(setup: &Setup) -> MtlsClientPool<tonic::body::Body> {
    MtlsClientPool::builder()
        .root_store(setup.pki.root_store())
        .http2_only()
        .build()
        .unwrap()
}

/// A unary call through `layer` over the pool.
async fn hello(setup: &Setup, layer: TokenBindingLayer) -> Result<String, Status> {
    let channel = ServiceBuilder::new().layer(layer).service(pool(setup));
    let mut client = tonic::client::Grpc::with_origin(channel, setup.origin.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let response = client
        .unary(
            tonic::Request::new(Bytes::from_static(b"hello")),
            PathAndQuery::from_static("/test.Greeter/Hello"),
            Raw,
        )
        .await?;
    Ok(String::from_utf8(response.into_inner().to_vec()).unwrap())
}

fn credentials(setup: &Setup) -> tower_token_binding::source::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_endpoint(setup.issuer.mtls_token_endpoint())
        .client_id("svc")
        .root_store(setup.pki.root_store())
}

/// Client credentials for `client_id`, registered with [`SECRET`].
fn with_secret(
    setup: &Setup,
    client_id: &str,
) -> tower_token_binding::source::ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_endpoint(setup.issuer.token_endpoint())
        .client_id(client_id)
        .client_secret_basic(SECRET)
        .root_store(setup.pki.root_store())
}

fn identity(setup: &Setup, name: &str) -> ClientIdentity {
    setup.pki.client_cert(name).unwrap().identity().unwrap()
}

/// A certificate-bound call that goes through, then the same token over
/// another client's certificate, refused with `UNAUTHENTICATED`: that
/// refusal.
async fn bound_call_then_stolen_token(setup: &Setup) -> Status {
    let owner = identity(setup, "svc.example");
    let source = credentials(setup).tls_client_auth(owner).build().unwrap();
    let token = source.fetch().await.unwrap();
    let answer = hello(setup, TokenBindingLayer::bound(source)).await;
    assert_eq!(answer.unwrap(), "hello, svc");

    let thief = identity(setup, "thief.example");
    let stolen = Token::new(token.access_token().secret()).bound_to(thief);
    let refused = hello(setup, TokenBindingLayer::bound(StaticToken::new(stolen)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    refused
}

#[tokio::test]
async fn a_certificate_bound_call_goes_through_and_a_stolen_token_is_unauthenticated() {
    let setup = setup().await;
    let refused = bound_call_then_stolen_token(&setup).await;
    let challenge = refused.metadata().get("www-authenticate").unwrap();
    assert!(
        challenge.to_str().unwrap().contains("invalid_token"),
        "{challenge:?}"
    );
}

#[tokio::test]
async fn a_dpop_bound_call_goes_through() {
    let setup = setup().await;
    let source = with_secret(&setup, "dpop-svc")
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build()
        .unwrap();
    let answer = hello(&setup, TokenBindingLayer::dpop(source)).await;
    assert_eq!(answer.unwrap(), "hello, dpop-svc");
}

#[tokio::test]
async fn a_pop_bound_call_goes_through() {
    let setup = setup().await;
    let source = with_secret(&setup, "pop-svc")
        .pop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build()
        .unwrap();
    let answer = hello(&setup, TokenBindingLayer::pop(source)).await;
    assert_eq!(answer.unwrap(), "hello, pop-svc");
}

impl tonic::server::NamedService for Greeter {
    const NAME: &'static str = "test.Greeter";
}

/// The leaf certificate tonic's TLS server saw, as a `PeerCertificate`.
fn peer_from_tonic(
    mut request: http::Request<tonic::body::Body>,
) -> http::Request<tonic::body::Body> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let leaf = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(|certs| certs.first().cloned());
    if let Some(leaf) = leaf {
        request.extensions_mut().insert(PeerCertificate::new(leaf));
    }
    request
}

#[tokio::test]
async fn behind_tonic_s_own_tls_server_the_certificate_comes_from_its_connection_info() {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let server_cert = pki.server_cert().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            server_cert.cert_pem(),
            server_cert.key_pem(),
        ))
        .client_ca_root(Certificate::from_pem(pki.ca_pem()))
        .client_auth_optional(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let validator = support::jwt_validator(&pki, &issuer, Duration::from_secs(3600));
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .layer(tower::util::MapRequestLayer::new(peer_from_tonic))
        .layer(CnfValidationLayer::new(validator))
        .add_service(Greeter)
        .serve_with_incoming(incoming);
    tokio::spawn(server);
    let setup = Setup {
        pki,
        issuer,
        origin: format!("https://localhost:{port}").parse().unwrap(),
    };

    bound_call_then_stolen_token(&setup).await;
}

#[tokio::test]
async fn a_call_without_a_token_is_unauthenticated() {
    let setup = setup().await;
    let channel = pool(&setup);
    let mut client = tonic::client::Grpc::with_origin(channel, setup.origin.clone());
    client.ready().await.unwrap();
    let refused = client
        .unary(
            tonic::Request::new(Bytes::from_static(b"hello")),
            PathAndQuery::from_static("/test.Greeter/Hello"),
            Raw,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.metadata().get("www-authenticate").is_some());
}
