//! HTTP client helpers every service uses.

/// The text of a failed request for logs, `/readyz` and metrics: reqwest's message followed by its causes
/// (`error sending request: client error (Connect): invalid peer certificate: UnknownIssuer`), without
/// the URL (it may carry credentials), each cause once.
pub fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        // Some layers repeat their cause's text in their own; keep the most specific once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_names_its_cause_and_not_the_url() {
        crate::tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let e = reqwest::Client::new()
            .get(format!("http://user:secret@127.0.0.1:{port}/path"))
            .send()
            .await
            .expect_err("nothing listens");
        let text = error_text(e);
        assert!(text.starts_with("error sending request"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("refused"),
            "the cause: {text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("/path"),
            "no URL: {text}"
        );
    }
}
