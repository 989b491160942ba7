//! The error of a token endpoint: what a [`ClientCredentials`](crate::source::ClientCredentials)
//! fetch fails with, and what the token cache counts by kind.

use std::fmt;

use crate::BoxError;
use crate::pool::PoolError;

/// The error of a [`ClientCredentials`](crate::source::ClientCredentials) fetch.
///
/// [`kind`](Self::kind) says what went wrong; OAuth error responses keep the
/// server's `error` and `error_description`
/// ([`oauth_error`](Self::oauth_error), [`oauth_description`](Self::oauth_description)).
/// Never contains the client secret or a token.
pub struct TokenEndpointError {
    kind: TokenEndpointErrorKind,
    status: Option<http::StatusCode>,
    oauth: Option<(String, Option<String>)>,
    message: Option<String>,
    source: Option<BoxError>,
}

/// What went wrong getting a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenEndpointErrorKind {
    /// The server answered with an OAuth error (RFC 6749 section 5.2), such
    /// as `invalid_client` or `invalid_scope`.
    OAuth,
    /// The server answered with a status that is neither success nor an
    /// OAuth error.
    Status,
    /// The answer is not a usable token response: not JSON, a missing or
    /// ill-typed field, or a body over the size limit.
    InvalidResponse,
    /// The token's type is not what the scheme expects (`Bearer` for RFC
    /// 8705, `DPoP` with a DPoP key, `pop` with a PoP key, `mtls_pop` for
    /// Microsoft Entra's flavour).
    TokenType,
    /// The token is a JWT bound (`cnf.x5t#S256`) to another certificate
    /// than the one presented.
    CertificateMismatch,
    /// The token is a JWT bound (`cnf.jkt`, or `cnf.kid` for PoP) to
    /// another key than ours, or to none.
    KeyMismatch,
    /// The DPoP proof for the token request could not be made.
    Proof,
    /// The request or the answer took longer than the timeout.
    Timeout,
    /// The connection failed (TCP, TLS).
    Transport,
    /// Discovery failed: no usable metadata at the issuer.
    Discovery,
}

impl TokenEndpointError {
    pub(crate) fn new(kind: TokenEndpointErrorKind) -> Self {
        Self {
            kind,
            status: None,
            oauth: None,
            message: None,
            source: None,
        }
    }

    pub(crate) fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub(crate) fn status(mut self, status: http::StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub(crate) fn oauth(mut self, error: String, description: Option<String>) -> Self {
        self.oauth = Some((error, description));
        self
    }

    pub(crate) fn source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> TokenEndpointErrorKind {
        self.kind
    }

    /// The HTTP status of the answer, if there was one.
    pub fn http_status(&self) -> Option<http::StatusCode> {
        self.status
    }

    /// The OAuth `error` code (for example `invalid_client`).
    pub fn oauth_error(&self) -> Option<&str> {
        self.oauth.as_ref().map(|(e, _)| e.as_str())
    }

    /// The OAuth `error_description`, if the server gave one.
    pub fn oauth_description(&self) -> Option<&str> {
        self.oauth.as_ref().and_then(|(_, d)| d.as_deref())
    }

    /// Whether it timed out.
    pub fn is_timeout(&self) -> bool {
        self.kind == TokenEndpointErrorKind::Timeout
    }

    /// Whether the TLS handshake failed.
    pub fn is_tls(&self) -> bool {
        self.source
            .as_ref()
            .and_then(|e| e.downcast_ref::<PoolError>())
            .is_some_and(PoolError::is_tls)
    }
}

impl fmt::Display for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TokenEndpointErrorKind as K;
        f.write_str(match self.kind {
            K::OAuth => "the token endpoint refused",
            K::Status => "the token endpoint answered with an unexpected status",
            K::InvalidResponse => "the token endpoint's answer is not a usable token response",
            K::TokenType => "the token endpoint returned a token of the wrong type",
            K::CertificateMismatch => {
                "the token endpoint returned a token bound to another certificate than ours"
            }
            K::KeyMismatch => "the token endpoint returned a token not bound to our proof key",
            K::Proof => "cannot make the DPoP proof for the token request",
            K::Timeout => "the token endpoint did not answer in time",
            K::Transport => "cannot reach the token endpoint",
            K::Discovery => "cannot discover the token endpoint",
        })?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        if let Some((error, description)) = &self.oauth {
            write!(f, ": {error}")?;
            if let Some(description) = description {
                write!(f, " ({description})")?;
            }
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenEndpointError");
        d.field("kind", &self.kind);
        if let Some(status) = self.status {
            d.field("status", &status);
        }
        if let Some(oauth) = &self.oauth {
            d.field("oauth", oauth);
        }
        if let Some(message) = &self.message {
            d.field("message", message);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for TokenEndpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The `outcome` label of a token fetch, for the metrics: `ok`, the
/// [`TokenEndpointErrorKind`] of a token endpoint's error, or `other`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn fetch_outcome<T>(result: &Result<T, BoxError>) -> &'static str {
    let error = match result {
        Ok(_) => return "ok",
        Err(error) => error,
    };
    let Some(error) = error.downcast_ref::<TokenEndpointError>() else {
        return "other";
    };
    match error.kind() {
        TokenEndpointErrorKind::OAuth => "oauth_error",
        TokenEndpointErrorKind::Status => "http_status",
        TokenEndpointErrorKind::InvalidResponse => "invalid_response",
        TokenEndpointErrorKind::TokenType => "token_type",
        TokenEndpointErrorKind::CertificateMismatch => "certificate_mismatch",
        TokenEndpointErrorKind::KeyMismatch => "key_mismatch",
        TokenEndpointErrorKind::Proof => "proof",
        TokenEndpointErrorKind::Timeout => "timeout",
        TokenEndpointErrorKind::Transport => "transport",
        TokenEndpointErrorKind::Discovery => "discovery",
    }
}
