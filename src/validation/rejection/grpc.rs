//! A refusal as a gRPC client expects it. A gRPC client reads the outcome
//! of a call from `grpc-status`, not from the HTTP status: an HTTP `401`
//! reaches it as a transport failure (`UNKNOWN` or `INTERNAL`), its
//! challenge unread. So a request whose `content-type` is
//! `application/grpc` (or `application/grpc+proto`, `;charset=...`) is
//! refused with HTTP `200` and a gRPC status in the headers, a
//! "Trailers-Only" response: `UNAUTHENTICATED` (16) where HTTP says `401`
//! or `400`, `PERMISSION_DENIED` (7) for `403`, `RESOURCE_EXHAUSTED` (8)
//! for `429`, `UNAVAILABLE` (14) for `503`. The `WWW-Authenticate`
//! challenge, `DPoP-Nonce` and `Retry-After` stay as response metadata,
//! and `grpc-message` says why, as the HTTP body would.

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};

use super::Rejection;
use crate::validation::layer::Settings;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Whether `request` is a gRPC call: its `content-type` is
/// `application/grpc`, alone or followed by `+` (a codec) or `;`.
pub(crate) fn is_grpc<B>(request: &Request<B>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|value| {
            value.len() >= GRPC.len()
                && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
                && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
        })
}

/// The gRPC status code for a refusal's HTTP status.
pub(crate) fn code(status: StatusCode) -> u8 {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => 16,
        StatusCode::FORBIDDEN => 7,
        StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        // Not a status a refusal has: `UNKNOWN`.
        _ => 2,
    }
}

/// `response`, a refusal built for HTTP, as a gRPC "Trailers-Only"
/// response: HTTP `200`, `content-type: application/grpc`, `grpc-status`
/// and `grpc-message` (the reason, or with `terse` settings only the HTTP
/// status's name, as the challenge does), an empty body; the other
/// headers kept.
pub(crate) fn refusal<B: Default>(response: Response<B>, settings: &Settings) -> Response<B> {
    let (mut parts, _) = response.into_parts();
    let code = code(parts.status);
    let reason = parts.status.canonical_reason().unwrap_or("refused");
    let message = match parts.extensions.get::<Rejection>() {
        Some(rejection) if !settings.terse => rejection.description().to_string(),
        _ => reason.to_owned(),
    };
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    parts
        .headers
        .insert(GRPC_STATUS, HeaderValue::from(u16::from(code)));
    if let Ok(message) = HeaderValue::try_from(percent_encode(&message)) {
        parts.headers.insert(GRPC_MESSAGE, message);
    }
    Response::from_parts(parts, B::default())
}

/// `grpc-message` encoding: bytes outside printable ASCII, and `%`, as
/// `%XX`.
fn percent_encode(message: &str) -> String {
    let mut encoded = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::RejectionKind;
    use crate::validation::rejection::Scheme;

    fn request(content_type: &str) -> Request<()> {
        Request::post("/svc.Orders/List")
            .header(header::CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&request(grpc)), "{grpc}");
        }
        for other in [
            "application/json",
            "application/grpc-web",
            "application/grpcx",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc(&request(other)), "{other}");
        }
        assert!(!is_grpc(&Request::new(())));
    }

    #[test]
    fn each_refusal_has_its_grpc_status_and_keeps_its_challenge() {
        let settings = Settings::default();
        for (kind, code) in [
            (RejectionKind::MissingCredentials, "16"),
            (RejectionKind::MalformedAuthorization, "16"),
            (RejectionKind::CertificateMismatch, "16"),
            (RejectionKind::InsufficientScope, "7"),
            (RejectionKind::KeysUnavailable, "14"),
            (RejectionKind::ReplayShareExceeded, "8"),
        ] {
            let http: Response<String> =
                Rejection::new(kind, Scheme::Bearer).into_response(&settings);
            let challenge = http.headers().get(header::WWW_AUTHENTICATE).cloned();
            let retry_after = http.headers().get(header::RETRY_AFTER).cloned();
            let grpc = refusal(http, &settings);
            assert_eq!(grpc.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(grpc.headers()[GRPC_STATUS], code, "{kind:?}");
            assert_eq!(grpc.headers()[header::CONTENT_TYPE], "application/grpc");
            assert!(grpc.headers().contains_key(GRPC_MESSAGE), "{kind:?}");
            assert_eq!(
                grpc.headers().get(header::WWW_AUTHENTICATE),
                challenge.as_ref()
            );
            assert_eq!(
                grpc.headers().get(header::RETRY_AFTER),
                retry_after.as_ref()
            );
            assert!(
                grpc.body().is_empty(),
                "a Trailers-Only response has no body"
            );
            assert!(grpc.extensions().get::<Rejection>().is_some());
        }
    }

    #[test]
    fn terse_settings_give_the_status_name_only() {
        let terse = Settings {
            terse: true,
            ..Settings::default()
        };
        let http: Response<String> =
            Rejection::new(RejectionKind::CertificateMismatch, Scheme::Bearer)
                .into_response(&terse);
        assert_eq!(
            refusal(http, &terse).headers()[GRPC_MESSAGE],
            "Unauthorized"
        );
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(percent_encode("no token"), "no token");
        assert_eq!(percent_encode("100% é\n"), "100%25 %C3%A9%0A");
    }
}
