use std::fmt;
use std::str::FromStr;

/// How requests are authorized.
///
/// | scheme | token | client certificate |
/// | --- | --- | --- |
/// | [`Bearer`](Self::Bearer) | an unbound token | none from the layer |
/// | [`MtlsPop`](Self::MtlsPop) | a token bound to a certificate (RFC 8705) | the one the token is bound to |
/// | [`MtlsOnly`](Self::MtlsOnly) | none | a fixed identity |
/// | [`Dpop`](Self::Dpop) | a token bound to a DPoP key (RFC 9449), with a fresh proof per request | none needed (the one that got the token, if any) |
/// | [`Pop`](Self::Pop) | a token bound to a key (`cnf.kid`, Microsoft's PoP), inside a fresh signed HTTP request per request | none needed (the one that got the token, if any) |
///
/// Parsing is case-insensitive: `bearer`, `mtls_pop`, `mtls`, `dpop`, `pop`.
///
/// ```
/// use tower_token_binding::binding::Scheme;
///
/// assert_eq!("MTLS_POP".parse::<Scheme>().unwrap(), Scheme::MtlsPop);
/// assert_eq!("Bearer".parse::<Scheme>().unwrap(), Scheme::Bearer);
/// assert_eq!("mtls".parse::<Scheme>().unwrap(), Scheme::MtlsOnly);
/// assert_eq!("DPoP".parse::<Scheme>().unwrap(), Scheme::Dpop);
/// assert_eq!("PoP".parse::<Scheme>().unwrap(), Scheme::Pop);
/// assert!("basic".parse::<Scheme>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// A plain bearer token, bound to nothing.
    Bearer,
    /// A certificate-bound token, sent over a connection presenting that
    /// certificate.
    MtlsPop,
    /// No token: the client certificate is the only credential.
    MtlsOnly,
    /// A DPoP-bound token (RFC 9449): `Authorization: DPoP <token>` and a
    /// `DPoP` proof, signed by the token's key, made for each request. No
    /// client certificate is needed, so any inner service will do; when the
    /// token came with an identity, it is in the request's extensions for
    /// an mTLS transport.
    Dpop,
    /// A PoP-bound token (Microsoft's signed HTTP requests):
    /// `Authorization: PoP <SHR>`, where the SHR, signed by the token's key
    /// and made for each request, carries the token, the method, host and
    /// path, the time and a nonce (see [`crate::proof::pop`]). No client
    /// certificate is needed; when the token came with an identity, it is
    /// in the request's extensions for an mTLS transport.
    Pop,
}

/// The word before the token in `Authorization`, for bound tokens.
///
/// RFC 8705 keeps `Bearer` (the default); Microsoft Entra's mTLS PoP tokens
/// go with `mtls_pop`. Parsing is case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderWord {
    /// `Authorization: Bearer <token>`.
    #[default]
    Bearer,
    /// `Authorization: mtls_pop <token>`.
    MtlsPop,
}

impl HeaderWord {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HeaderWord::Bearer => "Bearer",
            HeaderWord::MtlsPop => "mtls_pop",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            HeaderWord::Bearer => 0,
            HeaderWord::MtlsPop => 1,
        }
    }
}

impl Scheme {
    /// What a request sent under this scheme is bound to. `MtlsOnly` sends
    /// no token, and its client certificate is the whole credential: that
    /// is a certificate binding too, so it answers
    /// [`Certificate`](crate::cnf::Binding::Certificate).
    ///
    /// ```
    /// use tower_token_binding::binding::Scheme;
    /// use tower_token_binding::cnf::Binding;
    ///
    /// assert_eq!(Scheme::MtlsPop.binding(), Binding::Certificate);
    /// assert_eq!(Scheme::Dpop.binding(), Binding::Dpop);
    /// assert_eq!(Scheme::Bearer.binding(), Binding::None);
    /// ```
    pub fn binding(self) -> crate::cnf::Binding {
        use crate::cnf::Binding;
        match self {
            Self::Bearer => Binding::None,
            Self::MtlsPop | Self::MtlsOnly => Binding::Certificate,
            Self::Dpop => Binding::Dpop,
            Self::Pop => Binding::Pop,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Bearer => "bearer",
            Scheme::MtlsPop => "mtls_pop",
            Scheme::MtlsOnly => "mtls",
            Scheme::Dpop => "dpop",
            Scheme::Pop => "pop",
        })
    }
}

impl fmt::Display for HeaderWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = ParseSchemeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("bearer") {
            Ok(Scheme::Bearer)
        } else if s.eq_ignore_ascii_case("mtls_pop") {
            Ok(Scheme::MtlsPop)
        } else if s.eq_ignore_ascii_case("mtls") {
            Ok(Scheme::MtlsOnly)
        } else if s.eq_ignore_ascii_case("dpop") {
            Ok(Scheme::Dpop)
        } else if s.eq_ignore_ascii_case("pop") {
            Ok(Scheme::Pop)
        } else {
            Err(ParseSchemeError {
                expected: "bearer, mtls_pop, mtls, dpop or pop",
            })
        }
    }
}

impl FromStr for HeaderWord {
    type Err = ParseSchemeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("bearer") {
            Ok(HeaderWord::Bearer)
        } else if s.eq_ignore_ascii_case("mtls_pop") {
            Ok(HeaderWord::MtlsPop)
        } else {
            Err(ParseSchemeError {
                expected: "bearer or mtls_pop",
            })
        }
    }
}

/// The error for a string that names no [`Scheme`] or [`HeaderWord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseSchemeError {
    expected: &'static str,
}

impl fmt::Display for ParseSchemeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scheme; expected {}", self.expected)
    }
}

impl std::error::Error for ParseSchemeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in ["bearer", "BEARER", "Bearer"] {
            assert_eq!(s.parse::<Scheme>(), Ok(Scheme::Bearer));
            assert_eq!(s.parse::<HeaderWord>(), Ok(HeaderWord::Bearer));
        }
        for s in ["mtls_pop", "MTLS_POP", "Mtls_Pop"] {
            assert_eq!(s.parse::<Scheme>(), Ok(Scheme::MtlsPop));
            assert_eq!(s.parse::<HeaderWord>(), Ok(HeaderWord::MtlsPop));
        }
        assert_eq!("MTLS".parse::<Scheme>(), Ok(Scheme::MtlsOnly));
        assert!("mtls".parse::<HeaderWord>().is_err());
        assert!("".parse::<Scheme>().is_err());
        assert!(" bearer".parse::<Scheme>().is_err());
        assert_eq!("dpop".parse::<Scheme>(), Ok(Scheme::Dpop));
        assert!("dpop".parse::<HeaderWord>().is_err());
        for scheme in [
            Scheme::Bearer,
            Scheme::MtlsPop,
            Scheme::MtlsOnly,
            Scheme::Dpop,
            Scheme::Pop,
        ] {
            assert_eq!(scheme.to_string().parse::<Scheme>(), Ok(scheme));
        }
    }
}
