//! Certificates made at test time: a CA of the test's own and what it signs, good or bad.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate, PEM: what a client pins.
    pub pem: String,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, as real CAs have: clients tell it from other test CAs by name.
        let name = format!("MyScanner test CA {}", uuid::Uuid::new_v4().simple());
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        TestCa { issuer, pem }
    }

    /// A server certificate for `names` (host names or IP addresses), valid now.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.sign(CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap())
    }

    /// A server certificate for `names` that expired in 2021.
    pub fn issue_expired(&self, names: &[&str]) -> Issued {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// What a client that pins this CA trusts.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        myscanner_protocol::tls::client_config(Some(&self.pem)).unwrap()
    }

    /// Writes the CA's certificate into `dir`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

impl Issued {
    /// Writes `<name>.pem` and `<name>.key` into `dir`, each replaced in one rename (as a
    /// renewal tool does); returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        for (path, contents) in [(&key, &self.key_pem), (&cert, &self.cert_pem)] {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, contents).unwrap();
            std::fs::rename(&temporary, path).unwrap();
        }
        (cert, key)
    }
}

/// The development CA `deploy/scripts/test.sh` made for RabbitMQ's TLS listener (5671):
/// `MYSCANNER_TEST_BROKER_CA`, by default `.local/tls/ca.pem` in the workspace.
pub fn broker_ca() -> String {
    let path = std::env::var_os("MYSCANNER_TEST_BROKER_CA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/tls/ca.pem"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("the broker's development CA {} ({e}): run deploy/scripts/test.sh, which makes it", path.display())
    })
}
