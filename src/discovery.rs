//! Authorization server metadata (RFC 8414, OpenID Connect Discovery 1.0):
//! where it is published, how it is fetched and checked.
//!
//! Shared by both halves: the client finds the token endpoint with it
//! ([`ClientCredentials`](crate::source::ClientCredentials)), the server its
//! JWKS URL ([`JwksSource::discover`](crate::validation::JwksSource::discover)).
//! Each brings its own HTTPS client; this module knows the URLs, the order
//! they are tried in, the issuer check and the limits.

use std::future::Future;

use bytes::Bytes;
use http::uri::Scheme;
use http::{StatusCode, Uri};
use serde_json::Value;

/// Largest metadata document read.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Why a string is not a usable `https://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlError {
    /// It does not parse as a URL.
    Invalid,
    /// Another scheme than `https`, or no host.
    NotHttps,
}

/// Parses `url` as an absolute `https://` URL with a host.
pub(crate) fn https_uri(url: &str) -> Result<Uri, UrlError> {
    let uri: Uri = url.parse().map_err(|_| UrlError::Invalid)?;
    if uri.scheme() != Some(&Scheme::HTTPS) || uri.host().is_none() {
        return Err(UrlError::NotHttps);
    }
    Ok(uri)
}

/// The URL without any `user:password@` or query it may carry, for logs and
/// error messages.
pub(crate) fn redacted(url: &Uri) -> String {
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme_str().unwrap_or("https"),
        url.host().unwrap_or_default(),
        url.path()
    )
}

/// A URL as configuration errors show it: as given, so that a trailing
/// slash is there or not as the user wrote it; but user info and a query
/// (which may hold secrets) are left out, marked `…`. One that does not
/// parse as a URL with a host is not shown at all, as it may be a secret
/// pasted in the wrong place.
pub(crate) fn shown(url: &str) -> String {
    let Some(uri) = url
        .parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme().is_some() && uri.host().is_some())
    else {
        return "(a value not shown)".to_owned();
    };
    let user_info = uri.authority().is_some_and(|a| a.as_str().contains('@'));
    if !user_info && uri.query().is_none() && !url.contains('#') {
        return url.to_owned();
    }
    let mut shown = redacted(&uri);
    if user_info {
        shown = shown.replacen("://", "://…@", 1);
    }
    if uri.query().is_some() {
        shown.push_str("?…");
    }
    shown
}

/// Why a string is not a usable issuer identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuerError {
    /// Not an `https://` URL with a host.
    Url(UrlError),
    /// It carries `user:password@` (which has no place in an identifier,
    /// and would be a secret in logs).
    UserInfo,
    /// It has a query (RFC 8414 section 2).
    Query,
    /// It has a fragment (RFC 8414 section 2).
    Fragment,
}

impl IssuerError {
    /// A message for a user who configured `issuer`; never repeats user
    /// info or a query, which may hold secrets.
    pub(crate) fn message(self, issuer: &str) -> String {
        let shown = shown(issuer);
        match self {
            IssuerError::Url(UrlError::Invalid) => "the issuer is not a valid URL".to_owned(),
            IssuerError::Url(UrlError::NotHttps) => {
                format!("the issuer must be an https:// URL, got {shown}")
            }
            IssuerError::UserInfo => format!(
                "the issuer {shown} must not carry user info (user:password@): an issuer identifier is a plain https URL"
            ),
            IssuerError::Query => format!(
                "the issuer {shown} must not have a query (?...): RFC 8414 section 2 forbids it"
            ),
            IssuerError::Fragment => format!(
                "the issuer {shown} must not have a fragment (#...): RFC 8414 section 2 forbids it"
            ),
        }
    }
}

/// Parses `issuer` as an issuer identifier (RFC 8414 section 2): an
/// `https://` URL with a host, without user info, query or fragment.
pub(crate) fn issuer_uri(issuer: &str) -> Result<Uri, IssuerError> {
    // `http::Uri` does not keep fragments: look at the string itself.
    let (without_fragment, fragment) = match issuer.split_once('#') {
        Some((before, _)) => (before, true),
        None => (issuer, false),
    };
    let uri = https_uri(without_fragment).map_err(IssuerError::Url)?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(IssuerError::UserInfo);
    }
    if uri.query().is_some() {
        return Err(IssuerError::Query);
    }
    if fragment {
        return Err(IssuerError::Fragment);
    }
    Ok(uri)
}

/// Checks the issuer a metadata document claims against the one it was
/// fetched for: RFC 8414 section 3.3 wants them identical, character for
/// character. The error message shows both, and says so when only a
/// trailing slash differs.
pub(crate) fn check_issuer(claimed: &str, expected: &str) -> Result<(), String> {
    if claimed == expected {
        return Ok(());
    }
    let slash = if claimed.trim_end_matches('/') == expected.trim_end_matches('/') {
        " (they differ by a trailing slash only, but RFC 8414 section 3.3 wants the \
         issuer identical to the one configured: configure the issuer exactly as the \
         metadata writes it)"
    } else {
        ""
    };
    Err(format!(
        "the metadata is for issuer {claimed:?}, not {expected:?}{slash}"
    ))
}

/// Where an issuer's metadata may be, in the order to try: RFC 8414 section
/// 3 (the well-known part inserted between the host and the issuer's path),
/// then OpenID Connect Discovery (appended to the issuer). A trailing slash
/// of the issuer is dropped first, as RFC 8414 asks.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<String> {
    let issuer = issuer.trim_end_matches('/');
    let (origin, path) = match issuer.find("://").map(|i| i + 3) {
        Some(start) => match issuer[start..].find('/') {
            Some(slash) => issuer.split_at(start + slash),
            None => (issuer, ""),
        },
        None => (issuer, ""),
    };
    vec![
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ]
}

/// A metadata document whose `issuer` has been checked.
#[derive(Debug)]
pub(crate) struct Metadata {
    /// Where it came from, redacted.
    url: String,
    value: Value,
}

impl Metadata {
    /// Parses `body`, fetched from `url` (redacted), and checks that it is
    /// the metadata of `issuer`.
    pub(crate) fn parse(issuer: &str, url: String, body: &[u8]) -> Result<Self, String> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{url}: the metadata is not JSON: {e}"))?;
        let claimed = value
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{url}: the metadata has no issuer"))?;
        check_issuer(claimed, issuer).map_err(|e| format!("{url}: {e}"))?;
        Ok(Self { url, value })
    }

    /// Where the document came from (without userinfo or query).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A string field.
    pub(crate) fn string(&self, name: &str) -> Option<&str> {
        self.value.get(name).and_then(Value::as_str)
    }

    /// An RFC 8705 section 5 `mtls_endpoint_aliases` entry.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn mtls_alias(&self, name: &str) -> Option<&str> {
        self.value
            .get("mtls_endpoint_aliases")
            .and_then(|aliases| aliases.get(name))
            .and_then(Value::as_str)
    }

    /// The `https://` URL in field `name`; an error message (without the
    /// document's URL) when it is missing or not one.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn https_url(&self, name: &str) -> Result<Uri, String> {
        let url = self
            .string(name)
            .ok_or_else(|| format!("the metadata has no {name}"))?;
        https_uri(url).map_err(|e| match e {
            UrlError::Invalid => format!("the {name} is not a valid URL"),
            UrlError::NotHttps => match url.parse::<Uri>() {
                Ok(uri) => format!("the {name} must be an https:// URL, got {}", redacted(&uri)),
                Err(_) => format!("the {name} must be an https:// URL"),
            },
        })
    }
}

/// What one metadata request gave, as [`fetch_metadata`] needs it.
pub(crate) enum Fetched<E> {
    /// An answer. The body matters only for a success status.
    Answer(StatusCode, Bytes),
    /// Nothing usable at this URL (for example a body over the limit): try
    /// the next.
    Unusable(String),
    /// Stop discovering with this error (the connection failed, a timeout):
    /// the next URL is on the same server.
    Failed(E),
}

/// Why [`fetch_metadata`] found no metadata.
#[derive(Debug)]
pub(crate) enum DiscoveryError<E> {
    /// A request failed ([`Fetched::Failed`]).
    Fetch(E),
    /// No URL had metadata, or the first found is not usable (another
    /// issuer's, not JSON); the message names the URLs.
    NoMetadata(String),
}

/// Fetches the metadata of `issuer` with `get`, trying the URLs of
/// [`metadata_urls`] in order: a URL that answers with an error status or
/// [`Fetched::Unusable`] makes the next one be tried. The first document
/// found is checked and returned; one for another issuer is an error, never
/// passed over.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) async fn fetch_metadata<E, F, Fut>(
    issuer: &str,
    get: F,
) -> Result<Metadata, DiscoveryError<E>>
where
    F: FnMut(Uri) -> Fut,
    Fut: Future<Output = Fetched<E>>,
{
    fetch_metadata_naming(issuer, issuer, get).await
}

/// [`fetch_metadata`] from `issuer`'s metadata URLs, for a document that
/// names `named` as its issuer: a multi-tenant issuer's template, as
/// Microsoft Entra's `/organizations/v2.0` metadata names
/// `https://login.microsoftonline.com/{tenantid}/v2.0`.
pub(crate) async fn fetch_metadata_naming<E, F, Fut>(
    issuer: &str,
    named: &str,
    mut get: F,
) -> Result<Metadata, DiscoveryError<E>>
where
    F: FnMut(Uri) -> Fut,
    Fut: Future<Output = Fetched<E>>,
{
    let mut failures = Vec::new();
    for url in metadata_urls(issuer) {
        let Ok(uri) = url.parse::<Uri>() else {
            continue;
        };
        let shown = redacted(&uri);
        match get(uri).await {
            Fetched::Failed(e) => return Err(DiscoveryError::Fetch(e)),
            Fetched::Unusable(why) => failures.push(format!("{shown}: {why}")),
            Fetched::Answer(status, _) if !status.is_success() => {
                failures.push(format!("{shown}: {status}"));
            }
            Fetched::Answer(_, body) => {
                return Metadata::parse(named, shown, &body).map_err(DiscoveryError::NoMetadata);
            }
        }
    }
    Err(DiscoveryError::NoMetadata(if failures.is_empty() {
        format!("no metadata URL can be made from the issuer {issuer:?}")
    } else {
        failures.join("; ")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_urls_follow_rfc_8414() {
        assert_eq!(
            metadata_urls("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example/tenant/v2"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant/v2",
                "https://as.example/tenant/v2/.well-known/openid-configuration"
            ]
        );
        // The terminating slash goes before the well-known part is inserted.
        assert_eq!(
            metadata_urls("https://as.example:8443/tenant/"),
            [
                "https://as.example:8443/.well-known/oauth-authorization-server/tenant",
                "https://as.example:8443/tenant/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example/"),
            metadata_urls("https://as.example")
        );
    }

    #[test]
    fn issuers_compare_exactly() {
        assert!(check_issuer("https://as.example", "https://as.example").is_ok());
        assert!(check_issuer("https://as.example/t/", "https://as.example/t/").is_ok());
        for (claimed, expected) in [
            ("https://as.example/", "https://as.example"),
            ("https://as.example/t", "https://as.example/t/"),
        ] {
            let e = check_issuer(claimed, expected).unwrap_err();
            assert!(e.contains(&format!("{claimed:?}")), "{e}");
            assert!(e.contains(&format!("{expected:?}")), "{e}");
            assert!(e.contains("trailing slash"), "{e}");
        }
        for (claimed, expected) in [
            ("https://as.example/t", "https://as.example"),
            ("https://evil.example", "https://as.example"),
            ("http://as.example", "https://as.example"),
            ("https://AS.example", "https://as.example"),
        ] {
            let e = check_issuer(claimed, expected).unwrap_err();
            assert!(!e.contains("trailing slash"), "{e}");
        }
    }

    #[test]
    fn issuer_identifiers_have_no_user_info_query_or_fragment() {
        assert_eq!(
            issuer_uri("https://as.example/t").unwrap(),
            "https://as.example/t"
        );
        assert!(issuer_uri("https://as.example:8443/").is_ok());
        let refused = |issuer: &str| issuer_uri(issuer).unwrap_err();
        assert_eq!(refused("https://user:pw@as.example"), IssuerError::UserInfo);
        assert_eq!(refused("https://as.example?tenant=1"), IssuerError::Query);
        assert_eq!(refused("https://as.example/t#frag"), IssuerError::Fragment);
        assert_eq!(refused("https://as.example#"), IssuerError::Fragment);
        assert_eq!(
            refused("http://as.example"),
            IssuerError::Url(UrlError::NotHttps)
        );
        assert_eq!(refused("not a url"), IssuerError::Url(UrlError::Invalid));
        // The message never repeats the password or the query.
        let message = IssuerError::UserInfo.message("https://user:s3cret@as.example/");
        assert!(message.contains("https://…@as.example/"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        let message = IssuerError::Query.message("https://as.example/?key=s3cret");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn another_issuers_metadata_is_refused() {
        let body =
            json!({ "issuer": "https://evil.example", "jwks_uri": "https://evil.example/jwks" });
        let e = Metadata::parse(
            "https://as.example",
            "https://as.example/.well-known/oauth-authorization-server".into(),
            body.to_string().as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("https://evil.example"), "{e}");
        assert!(e.starts_with("https://as.example/.well-known/"), "{e}");

        for bad in [
            json!({}),
            json!({ "issuer": 7 }),
            json!(["https://as.example"]),
        ] {
            let parsed = Metadata::parse(
                "https://as.example",
                String::new(),
                bad.to_string().as_bytes(),
            );
            assert!(parsed.is_err(), "{bad}");
        }
        assert!(Metadata::parse("https://as.example", String::new(), b"<html>").is_err());
    }

    #[test]
    fn endpoints_must_be_https() {
        let metadata = |jwks_uri: Value| {
            let body = json!({ "issuer": "https://as.example", "jwks_uri": jwks_uri });
            Metadata::parse(
                "https://as.example",
                String::new(),
                body.to_string().as_bytes(),
            )
            .unwrap()
        };
        assert_eq!(
            metadata(json!("https://as.example/keys"))
                .https_url("jwks_uri")
                .unwrap(),
            "https://as.example/keys"
        );
        let e = metadata(json!("http://u:pw@as.example/keys?sig=secret"))
            .https_url("jwks_uri")
            .unwrap_err();
        assert_eq!(
            e,
            "the jwks_uri must be an https:// URL, got http://as.example/keys"
        );
        assert!(metadata(json!(42)).https_url("jwks_uri").is_err());
        assert!(metadata(json!("not a url")).https_url("jwks_uri").is_err());
        assert!(metadata(json!("/relative")).https_url("jwks_uri").is_err());
    }

    #[test]
    fn redaction_drops_userinfo_and_query() {
        let uri: Uri = "https://user:pw@as.example:8443/keys?sig=s3cret"
            .parse()
            .unwrap();
        assert_eq!(redacted(&uri), "https://as.example:8443/keys");
        // Shown as written, except what may be secret.
        assert_eq!(shown("http://as.example"), "http://as.example");
        assert_eq!(shown("https://as.example/t/"), "https://as.example/t/");
        assert_eq!(
            shown("https://user:pw@as.example:8443/keys?sig=s3cret"),
            "https://…@as.example:8443/keys?…"
        );
        assert_eq!(shown("s3cret"), "(a value not shown)");
    }

    fn answer(status: StatusCode, body: Value) -> Fetched<&'static str> {
        Fetched::Answer(status, Bytes::from(body.to_string()))
    }

    #[tokio::test]
    async fn the_urls_are_tried_in_order() {
        let issuer = "https://as.example/t";
        let good = json!({ "issuer": issuer, "jwks_uri": "https://as.example/keys" });

        // RFC 8414 missing: OpenID Connect Discovery.
        let mut asked = Vec::new();
        let metadata = fetch_metadata(issuer, |uri: Uri| {
            asked.push(uri.to_string());
            let answer = if uri.path().ends_with("openid-configuration") {
                answer(StatusCode::OK, good.clone())
            } else {
                answer(StatusCode::NOT_FOUND, json!({}))
            };
            async move { answer }
        })
        .await
        .unwrap();
        assert_eq!(
            asked,
            [
                "https://as.example/.well-known/oauth-authorization-server/t",
                "https://as.example/t/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            metadata.url(),
            "https://as.example/t/.well-known/openid-configuration"
        );

        // A transport failure stops at once.
        let mut calls = 0;
        let e = fetch_metadata(issuer, |_| {
            calls += 1;
            async { Fetched::Failed("connection refused") }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, DiscoveryError::Fetch("connection refused")));
        assert_eq!(calls, 1);

        // Another issuer's metadata at the first URL is refused, not skipped.
        let mut calls = 0;
        let e = fetch_metadata(issuer, |_| {
            calls += 1;
            let other = answer(StatusCode::OK, json!({ "issuer": "https://as.example/u" }));
            async move { other }
        })
        .await
        .unwrap_err();
        assert!(matches!(e, DiscoveryError::NoMetadata(m) if m.contains("/u")));
        assert_eq!(calls, 1);

        // Nothing anywhere: both URLs named.
        let e = fetch_metadata(issuer, |_| async {
            Fetched::<&str>::Unusable("body over the limit".into())
        })
        .await
        .unwrap_err();
        let DiscoveryError::NoMetadata(message) = e else {
            panic!("{e:?}")
        };
        assert!(message.contains("oauth-authorization-server/t: body over"));
        assert!(message.contains("openid-configuration: body over"));
    }
}
