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

/// When `e` failed because the server's TLS certificate was not accepted (unknown issuer, bad signature,
/// expired, wrong name), rustls's reason (`invalid peer certificate: UnknownIssuer`); `None` otherwise.
pub fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        // hyper wraps the TLS error in io::Errors, whose `source` skips the error they hold.
        let mut inner = s;
        while let Some(io) = inner.downcast_ref::<std::io::Error>() {
            match io.get_ref() {
                Some(held) => inner = held,
                None => break,
            }
        }
        let tls = inner.downcast_ref::<rustls::Error>();
        if let Some(
            err @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType),
        ) = tls
        {
            return Some(err.to_string());
        }
        source = s.source();
    }
    None
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

    #[tokio::test]
    async fn an_untrusted_certificate_is_told_apart_from_other_failures() {
        crate::tls::install_crypto_provider();
        let ca = crate::testkit::TestCa::new();
        let sink = crate::testkit::ScriptedSink::start().expect("sink");
        let upstream = sink
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("addr");
        let https = ca.tls_proxy(upstream).await;
        let client = reqwest::Client::new();
        let e = client
            .get(&https)
            .send()
            .await
            .expect_err("the CA is not trusted");
        let problem = certificate_problem(&e).expect("a certificate problem");
        assert!(problem.starts_with("invalid peer certificate"), "{problem}");
        assert!(error_text(e).contains(&problem));
        let pem = reqwest::Certificate::from_pem_bundle(ca.ca_pem.as_bytes()).expect("PEM");
        let trusted = reqwest::Client::builder()
            .tls_certs_merge(pem)
            .build()
            .expect("client");
        let answer = trusted.get(&https).send().await.expect("trusted");
        assert_eq!(answer.status(), 202);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let refused = client
            .get(format!("http://127.0.0.1:{port}"))
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(certificate_problem(&refused), None);
        sink.stop().await;
    }
}
