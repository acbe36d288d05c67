//! The encryption of every link a scanner, a user's port forwarder or the service itself
//! opens: HTTPS, WSS and AMQPS share one rustls client configuration per process.
//!
//! - **Trust.** A pinned CA (a device's `ca_file`) and nothing else when one is given;
//!   otherwise the platform's root store, read by rustls-native-certs (`docs/TLS.md` says
//!   why not a compiled-in list). Host names — and IP addresses, against IP SANs — are
//!   always verified: there is no switch that turns verification off.
//! - **Plain links** (`http`, `ws`, `amqp`) only to this machine (`localhost`, 127.0.0.0/8,
//!   `::1`), or where the operator explicitly allowed them ([`check_link`]).
//! - **Refusals explain themselves** ([`describe`]): an unknown issuer, an expired
//!   certificate and a wrong host name each read as what they are.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// The client configuration trusting `pinned_ca` (PEM, one or more certificates) alone, or
/// the platform's roots when there is none. Build it once and share it: rustls then resumes
/// sessions across the links that use it.
pub fn client_config(pinned_ca: Option<&str>) -> anyhow::Result<Arc<ClientConfig>> {
    let roots = match pinned_ca {
        Some(pem) => Arc::new(pinned_roots(pem)?),
        None => platform_roots()?,
    };
    with_roots(roots)
}

/// For a service that may never open a TLS link: the platform's roots, or — on a machine
/// without any — none (a TLS link then fails as untrusted, and says so) with a warning.
/// One configuration per process, so that its links share TLS session resumption.
pub fn platform_client_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = platform_roots().unwrap_or_else(|error| {
                tracing::warn!(%error, "outgoing TLS links will trust no server");
                Arc::new(RootCertStore::empty())
            });
            with_roots(roots).expect("ring supports the default protocol versions")
        })
        .clone()
}

/// The client configuration pinning the CA in `ca_file` (PEM), or the platform's roots
/// without one. A CA file that cannot be read is an error, never a reason to trust anyone
/// else.
pub fn client_config_from_file(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let pinned = ca_file
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading the CA file {}", path.display())))
        .transpose()?;
    client_config(pinned.as_deref())
}

/// ring's algorithms, AES-128-GCM first (as browsers and Mozilla's "modern" configuration
/// order them): as safe as AES-256 for this purpose and a third cheaper per byte, which a
/// tunnel carrying a screen feels.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let aes_128 = [
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ];
    provider.cipher_suites.sort_by_key(|suite| !aes_128.contains(suite));
    Arc::new(provider)
}

fn with_roots(roots: Arc<RootCertStore>) -> anyhow::Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn pinned_roots(pem: &str) -> anyhow::Result<RootCertStore> {
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().context("reading the pinned CA")?;
    anyhow::ensure!(!certificates.is_empty(), "the pinned CA file holds no certificate");
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).context("the pinned CA is not a usable CA certificate")?;
    }
    Ok(roots)
}

/// The platform's roots, read once per process (it takes milliseconds and the answer does
/// not change while the process runs).
fn platform_roots() -> anyhow::Result<Arc<RootCertStore>> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a platform root certificate could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err("no platform root certificates found: install the ca-certificates package, \
                        or pin the service's CA (ca_file)"
                .to_owned());
        }
        Ok(Arc::new(roots))
    });
    roots.clone().map_err(anyhow::Error::msg)
}

/// What a URL's link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// `https`, `wss`, `amqps`.
    Encrypted,
    /// Plain, to this machine.
    Loopback,
    /// Plain, to another machine: only where explicitly allowed.
    Insecure,
}

/// Classifies the link to `url` and refuses a plain one to another machine unless
/// `allow_insecure`.
pub fn check_link(url: &str, allow_insecure: bool) -> anyhow::Result<Link> {
    // Where URL parsers disagree (a backslash, whitespace, control characters) the host seen
    // here could differ from the one a client connects to: such URLs are refused outright.
    if url.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        anyhow::bail!("not a well-formed URL: {url:?}");
    }
    let parsed = url::Url::parse(url).with_context(|| format!("not a URL: {url:?}"))?;
    let scheme = parsed.scheme();
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => is_loopback(&ip.to_string()),
        // Schemes the URL standard does not know (amqp) keep IPv4 addresses as text.
        Some(url::Host::Domain(name)) => is_loopback(name),
        None => anyhow::bail!("no host in {url:?}"),
    };
    let link = match scheme {
        "https" | "wss" | "amqps" => Link::Encrypted,
        "http" | "ws" | "amqp" if loopback => Link::Loopback,
        "http" | "ws" | "amqp" => Link::Insecure,
        _ => anyhow::bail!("unsupported scheme in {url:?}"),
    };
    if link == Link::Insecure && !allow_insecure {
        let host = parsed.host_str().unwrap_or_default();
        anyhow::bail!(
            "refusing unencrypted {scheme}:// to {host}: only this machine may be reached without TLS \
             (use {scheme}s://, or set allow_insecure = true to accept the risk)"
        );
    }
    Ok(link)
}

/// `localhost` or a loopback address: traffic that never leaves this machine. (Not
/// `localhost.`: a name with its root dot may be looked up in the DNS.)
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => false,
    }
}

/// An error as a line for a log: when a TLS verdict is among its causes, what it means comes
/// first ("the server's certificate has expired"), then the error's own chain.
pub fn describe(error: &anyhow::Error) -> String {
    match error.chain().find_map(explain) {
        Some(meaning) => format!("{meaning} ({error:#})"),
        None => format!("{error:#}"),
    }
}

/// What a TLS failure among `error`'s causes means, in words.
pub fn explain(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_rustls(error).map(explain_rustls)
}

fn find_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    // io::Error hides the error it wraps from `source()` (it returns that error's own
    // source), and TLS clients wrap their verdicts in one io::Error or two.
    if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && let Some(tls) = find_rustls(inner)
    {
        return Some(tls);
    }
    error.source().and_then(find_rustls)
}

fn explain_rustls(error: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(certificate) = error else {
        return format!("TLS handshake failed: {error}");
    };
    match certificate {
        // A bad signature: signed by a CA named like a trusted one, with another key.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "TLS refused: the server's certificate is not signed by a trusted CA (the pinned ca_file, \
             or the platform's roots)"
                .to_owned()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "TLS refused: the server's certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "TLS refused: the server's certificate is not valid yet (is this machine's clock right?)".to_owned()
        }
        CertificateError::NotValidForName => {
            "TLS refused: the server's certificate is not valid for the host name connected to".to_owned()
        }
        CertificateError::NotValidForNameContext { expected, .. } => {
            format!("TLS refused: the server's certificate is not valid for {expected:?}")
        }
        other => format!("TLS refused: the server's certificate is not acceptable ({other:?})"),
    }
}

/// Opens an AMQP connection to `uri` over `tls` when its scheme is `amqps` (lapin's own
/// connector would build a configuration of its own, without our roots).
pub async fn amqp_connect(
    uri: lapin::uri::AMQPUri,
    properties: lapin::ConnectionProperties,
    tls: Arc<ClientConfig>,
) -> lapin::Result<lapin::Connection> {
    use lapin::tcp::{AMQPUriTcpExt, RustlsConnector, TLSConfig};
    use lapin::uri::AMQPScheme;
    let connector = RustlsConnector::from(tls);
    let runtime = lapin::runtime::default_runtime()?;
    lapin::Connection::connector(
        uri,
        runtime,
        async move |uri, runtime| {
            let encrypted = uri.scheme == AMQPScheme::AMQPS;
            let mut plain = uri.clone();
            plain.scheme = AMQPScheme::AMQP;
            let stream = plain.connect_with_config_async(TLSConfig::default(), &runtime).await?;
            if !encrypted {
                return Ok(stream);
            }
            stream.into_rustls(&connector, &uri.authority.host).await.map_err(|error| {
                // Keep the verdict readable through lapin's error.
                let meaning = explain(&error).unwrap_or_else(|| error.to_string());
                lapin::Error::from(std::io::Error::new(error.kind(), format!("{meaning} ({error})")))
            })
        },
        properties,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_links_always_pass() {
        for url in
            ["https://cloud.example", "wss://cloud.example:443/api/v1/agent/tunnel", "amqps://mq.example:5671/%2f"]
        {
            assert_eq!(check_link(url, false).unwrap(), Link::Encrypted, "{url}");
        }
    }

    #[test]
    fn plain_links_pass_only_to_this_machine() {
        for url in [
            "http://127.0.0.1:8080",
            "ws://localhost:8080/x",
            "amqp://guest:guest@127.0.0.2:5672/%2f",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://LOCALHOST",
        ] {
            assert_eq!(check_link(url, false).unwrap(), Link::Loopback, "{url}");
        }
        for url in
            ["http://cloud.example", "ws://192.0.2.1/", "amqp://user:pw@mq.example:5672/%2f", "http://[2001:db8::1]/"]
        {
            let refused = check_link(url, false).unwrap_err().to_string();
            assert!(refused.contains("allow_insecure"), "{refused}");
            assert_eq!(check_link(url, true).unwrap(), Link::Insecure, "{url}");
        }
    }

    #[test]
    fn the_host_is_read_past_credentials_and_ports() {
        // A user name that looks like a loopback host does not make the link one.
        assert_eq!(check_link("amqp://127.0.0.1:pw@mq.example:5672/", true).unwrap(), Link::Insecure);
        assert_eq!(check_link("http://127.0.0.1:pw@mq.example/", true).unwrap(), Link::Insecure);
        assert_eq!(check_link("http://localhost./", true).unwrap(), Link::Insecure, "a name the DNS may answer");
        assert!(check_link("ftp://127.0.0.1/", true).is_err());
        assert!(check_link("not a url", true).is_err());
    }

    #[test]
    fn urls_parsers_read_differently_are_refused() {
        // The url crate sees evil.example here; a naive split would see 127.0.0.1.
        for url in
            ["http://evil.example\\@127.0.0.1:8080/", "http://127.0.0.1 @evil.example/", "http://evil.example\t/"]
        {
            assert!(check_link(url, false).unwrap_err().to_string().contains("not a well-formed URL"), "{url}");
        }
    }

    #[test]
    fn aes_128_gcm_comes_first_and_every_suite_stays() {
        let suites = &provider().cipher_suites;
        assert_eq!(suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(suites.len(), rustls::crypto::ring::default_provider().cipher_suites.len());
    }

    #[test]
    fn a_pinned_ca_without_a_certificate_is_refused() {
        assert!(client_config(Some("not a certificate")).is_err());
    }

    #[test]
    fn certificate_verdicts_read_as_what_they_are() {
        // As reqwest reports them: an io::Error inside an io::Error, under its own errors.
        let wrapped = |e: CertificateError| {
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(e));
            describe(&anyhow::Error::new(std::io::Error::other(io)).context("connecting"))
        };
        assert!(
            wrapped(CertificateError::UnknownIssuer).starts_with("TLS refused: the server's certificate is not signed")
        );
        assert!(wrapped(CertificateError::Expired).contains("has expired"));
        assert!(wrapped(CertificateError::NotValidForName).contains("not valid for the host name"));
    }
}
