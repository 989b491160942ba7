//! The validity period of a certificate (RFC 5280 section 4.1.2.5), read
//! from its DER with the `der` crate: only as far as the dates.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{AnyRef, GeneralizedTime, UtcTime};
use der::{Decode, Reader, SliceReader, Tag, TagNumber};

/// When a certificate may be used: `notBefore` to `notAfter`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

/// Where a moment falls against a [`Validity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Within {
    NotYet,
    Yes,
    Expired,
}

impl Validity {
    /// Reads the validity of the DER certificate `cert`.
    pub(crate) fn of(cert: &[u8]) -> der::Result<Self> {
        let mut reader = SliceReader::new(cert)?;
        let validity = reader.sequence(|certificate| {
            let validity = certificate.sequence(|tbs| {
                // version [0] EXPLICIT, absent for v1 certificates.
                let version = Tag::ContextSpecific {
                    constructed: true,
                    number: TagNumber::N0,
                };
                if tbs.peek_tag()? == version {
                    AnyRef::decode(tbs)?;
                }
                AnyRef::decode(tbs)?; // serialNumber
                AnyRef::decode(tbs)?; // signature
                AnyRef::decode(tbs)?; // issuer
                let validity = tbs.sequence(|dates| {
                    Ok(Validity {
                        not_before: time(dates)?,
                        not_after: time(dates)?,
                    })
                })?;
                // subject, subjectPublicKeyInfo, and the rest.
                tbs.read_slice(tbs.remaining_len())?;
                Ok(validity)
            })?;
            // signatureAlgorithm, signatureValue.
            certificate.read_slice(certificate.remaining_len())?;
            Ok(validity)
        })?;
        reader.finish(validity)
    }

    /// Where `now` falls.
    pub(crate) fn at(&self, now: SystemTime) -> Within {
        if now < self.not_before {
            Within::NotYet
        } else if now > self.not_after {
            Within::Expired
        } else {
            Within::Yes
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "valid from {} to {}",
            Date(self.not_before),
            Date(self.not_after)
        )
    }
}

/// A `Time` (RFC 5280 section 4.1.2.5): `UTCTime` or `GeneralizedTime`.
fn time<'a>(reader: &mut impl Reader<'a>) -> der::Result<SystemTime> {
    let since_epoch = if reader.peek_tag()? == Tag::UtcTime {
        UtcTime::decode(reader)?.to_unix_duration()
    } else {
        GeneralizedTime::decode(reader)?.to_unix_duration()
    };
    Ok(UNIX_EPOCH + since_epoch)
}

/// A moment shown as RFC 3339 in UTC, to the second: `2026-11-27T05:30:00Z`.
#[derive(Clone, Copy)]
pub(crate) struct Date(pub(crate) SystemTime);

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since_epoch = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = Duration::from_secs(since_epoch.as_secs());
        match der::DateTime::from_unix_duration(seconds) {
            Ok(date) => write!(f, "{date}"),
            // Past 9999: cannot come from a certificate.
            Err(_) => write!(f, "{} s after 1970", seconds.as_secs()),
        }
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dates_of_the_fixtures() {
        // `openssl x509 -noout -dates`: Nov 24 04:59:38 2026 GMT to
        // Oct 31 04:59:38 2126 GMT (a GeneralizedTime, past 2049).
        for name in ["client.pem", "rsa.pem", "leaf.pem", "ca.pem"] {
            let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
            let pem = std::fs::read(path).unwrap();
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
            let validity = Validity::of(&der).unwrap();
            assert_eq!(
                validity.to_string(),
                "valid from 2026-11-24T04:59:38Z to 2126-10-31T04:59:38Z",
                "{name}"
            );
            let day = Duration::from_secs(86_400);
            assert_eq!(validity.at(validity.not_before - day), Within::NotYet);
            assert_eq!(validity.at(validity.not_before), Within::Yes);
            assert_eq!(validity.at(validity.not_after), Within::Yes);
            assert_eq!(validity.at(validity.not_after + day), Within::Expired);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x03\x02\x01\x01",
            b"\x30\x80\x00\x00",
        ] {
            assert!(Validity::of(bad).is_err());
        }
    }
}
