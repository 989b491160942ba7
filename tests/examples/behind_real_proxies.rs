//! `examples/resource_server.rs` behind real TLS-terminating proxies on
//! loopback: HAProxy forwarding RFC 9440 `Client-Cert`, and nginx
//! forwarding `$ssl_client_escaped_cert` in `X-SSL-Client-Cert`. Each proxy
//! terminates mutual TLS (`verify optional` against the test CA), and the
//! server believes the header from the proxy's address only.
//!
//! The configurations written here are the README's "Behind a proxy"
//! entries. Without `haproxy` or `nginx` on the PATH a test says so on
//! stderr and passes; under `CI=true` it fails (`.ci/run` installs both from
//! Debian).
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::path::PathBuf;

use bytes::Bytes;
use http::{Request, StatusCode, Version, header};
use http_body_util::{BodyExt as _, Full};
use support::{
    HttpsClient, https_client_http1, https_client_http2, proxy_binary, serves_tls_from,
    start_on_a_free_port,
};
use tokio::process::{Child, Command};
use tower_token_binding::ClientIdentity;
use tower_token_binding::test_util::{TestIssuer, TestPki};

/// Everything a proxy test needs: the issuer, the example behind the proxy,
/// the certificates.
struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    dir: tempfile::TempDir,
    holder: ClientIdentity,
    other: ClientIdentity,
    _app: Child,
    app_port: u16,
}

impl Setup {
    /// Starts the example in forwarded mode, believing `forwarded` from
    /// 127.0.0.1 only.
    async fn start(forwarded: &[&str]) -> Setup {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            issuer.issuer(),
            "--audience",
            issuer.audience(),
            "--jwks-file",
            jwks.to_str().unwrap(),
            "--trusted-proxy",
            "127.0.0.1",
        ];
        args.extend_from_slice(forwarded);
        let (app, url) = support::spawn_announcing("resource_server", &args).await;
        let app_port = url.rsplit(':').next().unwrap().parse().unwrap();
        Setup {
            holder: pki
                .client_cert("holder.example")
                .unwrap()
                .identity()
                .unwrap(),
            other: pki
                .client_cert("other.example")
                .unwrap()
                .identity()
                .unwrap(),
            pki,
            issuer,
            dir,
            _app: app,
            app_port,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The proxy's server certificate and key (and both in one file, as
    /// HAProxy wants), and the CA its clients' certificates must chain to.
    fn write_tls_files(&self) {
        let server = self.pki.server_cert().unwrap();
        server.write_pem_files(self.dir.path(), "server").unwrap();
        std::fs::write(
            self.path("server-with-key.pem"),
            format!("{}{}", server.cert_pem(), server.key_pem()),
        )
        .unwrap();
        std::fs::write(self.path("ca.pem"), self.pki.ca_pem()).unwrap();
    }

    /// A token bound to the holder's certificate.
    fn token(&self) -> String {
        self.issuer
            .sign(&self.issuer.claims("svc", Some(self.holder.thumbprint())))
            .unwrap()
    }

    /// Every case against the proxy at `port`, which forwards the
    /// certificate in `header` (the name a client could also send).
    async fn cases(&self, port: u16, header: &str, forged: &str) {
        let url = format!("https://localhost:{port}/whoami");
        let token = self.token();
        for (version, client) in [
            (
                Version::HTTP_11,
                https_client_http1(&self.pki, Some(&self.holder)),
            ),
            (
                Version::HTTP_2,
                https_client_http2(&self.pki, Some(&self.holder)),
            ),
        ] {
            let (status, got, body) = call(&client, &url, &token, None).await;
            assert_eq!(status, StatusCode::OK, "{version:?}: {body}");
            assert_eq!(got, version, "the client spoke {version:?} to the proxy");
            assert!(
                body.contains(&self.holder.thumbprint().to_string()),
                "the certificate seen is the holder's: {body}"
            );
        }
        let (status, _, body) = call(
            &https_client_http1(&self.pki, Some(&self.other)),
            &url,
            &token,
            None,
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "another certificate: {body}"
        );
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let client = match version {
                Version::HTTP_2 => https_client_http2(&self.pki, None),
                _ => https_client_http1(&self.pki, None),
            };
            let (status, _, body) = call(&client, &url, &token, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "no certificate: {body}");
            // A client that sends the header itself, naming the holder's
            // certificate, with no certificate of its own or with another.
            let (status, _, body) = call(&client, &url, &token, Some((header, forged))).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "a forged {header}: {body}"
            );
        }
        let client = https_client_http1(&self.pki, Some(&self.other));
        let (status, _, body) = call(&client, &url, &token, Some((header, forged))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a forged {header} beside another certificate: {body}"
        );
    }
}

/// `GET url` with the token (and `extra`, a header the client adds): status,
/// HTTP version, body.
async fn call(
    client: &HttpsClient,
    url: &str,
    token: &str,
    extra: Option<(&str, &str)>,
) -> (StatusCode, Version, String) {
    let mut request = Request::get(url).header(header::AUTHORIZATION, format!("Bearer {token}"));
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    let response = client
        .request(request.body(Full::<Bytes>::default()).unwrap())
        .await
        .expect("the proxy answers");
    let (status, version) = (response.status(), response.version());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, version, String::from_utf8_lossy(&body).into_owned())
}

/// The holder's certificate as each header carries it, for a client that
/// tries to claim it.
fn as_client_cert(setup: &Setup) -> String {
    use base64::Engine as _;
    let der = setup.holder.leaf();
    format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(der.as_ref())
    )
}

fn as_escaped_pem(setup: &Setup) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(setup.holder.leaf().as_ref());
    support::nginx_escape(&format!(
        "-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    ))
}

/// HAProxy 2.6 terminates mutual TLS and forwards RFC 9440 `Client-Cert`,
/// replacing any the client sent.
#[tokio::test]
async fn behind_haproxy_with_client_cert() {
    let Some(haproxy) = proxy_binary("haproxy") else {
        return;
    };
    let setup = Setup::start(&["--forwarded", "client-cert"]).await;
    setup.write_tls_files();
    let (_proxy, port) = start_on_a_free_port(
        |port| {
            let config = format!(
                "global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend tls
    bind 127.0.0.1:{port} ssl crt {crt} ca-file {ca} verify optional alpn h2,http/1.1
    # Whatever the client sent under this name goes; the proxy's own value
    # comes in only when the client presented a certificate.
    http-request del-header Client-Cert
    http-request set-header Client-Cert :%[ssl_c_der,base64]: if {{ ssl_c_used }}
    default_backend app
backend app
    server app 127.0.0.1:{app}
",
                crt = setup.path("server-with-key.pem").display(),
                ca = setup.path("ca.pem").display(),
                app = setup.app_port,
            );
            std::fs::write(setup.path("haproxy.cfg"), config).unwrap();
            let err = setup.path("haproxy.err");
            let proxy = Command::new(&haproxy)
                .arg("-db")
                .arg("-f")
                .arg(setup.path("haproxy.cfg"))
                .stdout(std::fs::File::create(setup.path("haproxy.log")).unwrap())
                .stderr(std::fs::File::create(&err).unwrap())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            (proxy, err)
        },
        |port| serves_tls_from(&setup.pki, port),
    );
    setup
        .cases(port, "client-cert", &as_client_cert(&setup))
        .await;
}

/// nginx 1.22 terminates mutual TLS and forwards
/// `$ssl_client_escaped_cert` in `X-SSL-Client-Cert`, replacing any the
/// client sent (and sending none when the client presented none).
#[tokio::test]
async fn behind_nginx_with_an_escaped_pem() {
    let Some(nginx) = proxy_binary("nginx") else {
        return;
    };
    let setup = Setup::start(&["--forwarded", "escaped-pem", "--forwarded-header", "nginx"]).await;
    setup.write_tls_files();
    let dir = setup.dir.path().display().to_string();
    let (_proxy, port) = start_on_a_free_port(
        |port| {
            let config = format!(
                "daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/nginx.err info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client optional;
        location / {{
            # Replaces the client's header of this name; an empty value
            # (no client certificate) sends none.
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_pass http://127.0.0.1:{app};
        }}
    }}
}}
",
                app = setup.app_port,
            );
            std::fs::write(setup.path("nginx.conf"), config).unwrap();
            let err = setup.path("nginx.err");
            let proxy = Command::new(&nginx)
                .arg("-p")
                .arg(setup.dir.path())
                .arg("-c")
                .arg(setup.path("nginx.conf"))
                .arg("-e")
                .arg(&err)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(setup.path("nginx.stderr")).unwrap())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            (proxy, err)
        },
        |port| serves_tls_from(&setup.pki, port),
    );
    setup
        .cases(port, "x-ssl-client-cert", &as_escaped_pem(&setup))
        .await;
}
