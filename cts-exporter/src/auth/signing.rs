//! AK/SK request signing, `SDK-HMAC-SHA256` in the documented APIG/IAM form:
//!
//! ```text
//! CanonicalRequest = METHOD \n URI/ \n QUERY \n name:value\n... \n signed;headers \n hex(sha256(body))
//! StringToSign     = SDK-HMAC-SHA256 \n X-Sdk-Date \n hex(sha256(CanonicalRequest))
//! Authorization    = SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<names>, Signature=hex(HMAC(SK, StringToSign))
//! ```
//!
//! The URI has every segment percent-encoded (RFC 3986 unreserved kept) and always ends in `/` for signing
//! (not on the wire); the query has keys and values encoded the same way, sorted by key then value.

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// The algorithm name in `Authorization` and the first line of the StringToSign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";

/// Everything except RFC 3986 unreserved characters is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters (space is `%20`).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Builds a query string from pairs, encoded exactly as the canonical query encodes them (so what is
/// signed is what is sent). Order is kept; the canonical form sorts separately.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; an empty MAC would only
    // make the server refuse the signature.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// The canonical URI of a wire path: each segment decoded and re-encoded, with a trailing `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut out = path
        .split('/')
        .map(|seg| encode_component(&percent_decode_str(seg).decode_utf8_lossy()))
        .collect::<Vec<_>>()
        .join("/");
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query of a wire query string (without `?`): pairs decoded, re-encoded, sorted.
pub fn canonical_query(query: &str) -> String {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (encode_component(&decode(k)), encode_component(&decode(v))),
            None => (encode_component(&decode(p)), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request to sign. Header names may have any case; every header given is signed.
#[derive(Debug, Clone)]
pub struct SigningRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path as on the wire.
    pub path: &'a str,
    /// Query string as on the wire, without `?`.
    pub query: &'a str,
    /// Headers to sign; must include `Host` and `X-Sdk-Date`.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// The result of signing: the canonical request (for debugging tests) and the header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request that was hashed.
    pub canonical_request: String,
    /// `signed;header;names`.
    pub signed_headers: String,
    /// Hex signature.
    pub signature: String,
}

impl Signature {
    /// The `Authorization` header value for access key `ak`.
    pub fn authorization(&self, ak: &str) -> String {
        format!(
            "{ALGORITHM} Access={ak}, SignedHeaders={}, Signature={}",
            self.signed_headers, self.signature
        )
    }
}

/// Signs a request with secret key `sk`; `sdk_date` is the `X-Sdk-Date` value (`YYYYMMDDTHHMMSSZ`).
pub fn sign(req: &SigningRequest<'_>, sdk_date: &str, sk: &str) -> Signature {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed_headers = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.to_ascii_uppercase(),
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        sha256_hex(req.body)
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{sdk_date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = hex::encode(hmac_sha256(sk.as_bytes(), string_to_sign.as_bytes()));
    Signature {
        canonical_request,
        signed_headers,
        signature,
    }
}

/// `X-Sdk-Date` for a time: `YYYYMMDDTHHMMSSZ` in UTC.
pub fn sdk_date(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented test vector (reference §5.6, Huawei "API Request Signing Guide").
    #[test]
    fn documented_test_vector() {
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("Host".to_owned(), "service.region.example.com".to_owned()),
            ("X-Sdk-Date".to_owned(), "20191115T033655Z".to_owned()),
        ];
        let req = SigningRequest {
            method: "GET",
            path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
            query: "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
            headers: &headers,
            body: b"",
        };
        let sig = sign(
            &req,
            "20191115T033655Z",
            "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        );
        assert_eq!(
            sig.canonical_request,
            "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\nlimit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n\
             content-type:application/json\nhost:service.region.example.com\nx-sdk-date:20191115T033655Z\n\n\
             content-type;host;x-sdk-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(sig.canonical_request.as_bytes()),
            "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
        );
        assert_eq!(
            sig.signature,
            "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
        assert_eq!(
            sig.authorization("AK1"),
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;host;x-sdk-date, \
             Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_uri("/v3/a b/traces"), "/v3/a%20b/traces/");
        assert_eq!(canonical_uri("/v3/a%20b/"), "/v3/a%20b/");
        assert_eq!(canonical_query("b=2&a=x+y&a=%21"), "a=%21&a=x%20y&b=2");
        assert_eq!(canonical_query(""), "");
        let q = encode_query(&[("name".into(), "eu-de_my proj/ä".into())]);
        assert_eq!(q, "name=eu-de_my%20proj%2F%C3%A4");
        assert_eq!(canonical_query(&q), q);
    }

    #[test]
    fn sdk_date_format() {
        let t = chrono::DateTime::from_timestamp(1_573_789_015, 0).unwrap_or_default();
        assert_eq!(sdk_date(t), "20191115T033655Z");
    }
}
