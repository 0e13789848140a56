//! A given token (`auth.token`, `OS_TOKEN`): sent as `X-Auth-Token`. It cannot be renewed, so a 401 is
//! reported as [`AuthError::TokenRejected`].

use super::AuthError;
use reqwest::header::{HeaderMap, HeaderValue};
use shared::config::Secret;

/// The header IAM and CTS read tokens from.
pub const X_AUTH_TOKEN: &str = "x-auth-token";

/// Puts a token in `X-Auth-Token`, marked sensitive (so HTTP debug output hides it).
pub fn set_token_header(headers: &mut HeaderMap, token: &str) -> Result<(), AuthError> {
    let mut value = HeaderValue::from_str(token)
        .map_err(|_| AuthError::Protocol("the token is not a valid header value".into()))?;
    value.set_sensitive(true);
    headers.insert(X_AUTH_TOKEN, value);
    Ok(())
}

/// Authorises requests with a fixed token.
pub struct TokenAuth {
    token: Secret,
}

impl TokenAuth {
    /// Wraps the configured token.
    pub fn new(token: Secret) -> Self {
        Self { token }
    }

    /// Adds `X-Auth-Token`.
    pub fn apply(&self, headers: &mut HeaderMap) -> Result<(), AuthError> {
        set_token_header(headers, self.token.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_sensitive() {
        let mut h = HeaderMap::new();
        TokenAuth::new(Secret::new("tok123")).apply(&mut h).unwrap();
        assert!(h[X_AUTH_TOKEN].is_sensitive());
        assert!(!format!("{h:?}").contains("tok123"));
        assert!(set_token_header(&mut h, "bad\ntoken").is_err());
    }
}
