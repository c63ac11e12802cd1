//! Throwaway TLS material and password hashes for tests against a gateway
//! started with a web config ([`Pushgateway::start_with_web_config`]).
//!
//! [`Pki::generate`] makes a fresh CA, a server certificate for `127.0.0.1`
//! (IP SAN) and a client certificate signed by it, plus an unrelated CA for
//! "wrong CA" tests, all written as PEM files into a temp dir that lives as
//! long as the [`Pki`]. Keys are ECDSA P-256, made with `rcgen` on `ring`.
//!
//! [`Pushgateway::start_with_web_config`]: crate::harness::Pushgateway::start_with_web_config

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::harness::Access;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    /// The CA certificate that signed the server and client certificates.
    pub ca: PathBuf,
    /// The gateway's certificate (SAN `IP:127.0.0.1`) and key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate (CN `pushguard-test-client`) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The client certificate followed by its key, in one file.
    pub client_combined: PathBuf,
    /// Another CA, unrelated to everything above: a wrong `--ca-file`.
    pub other_ca: PathBuf,
    /// A client certificate signed by [`other_ca`](Self::other_ca), which a
    /// gateway trusting [`ca`](Self::ca) refuses; with its key.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn leaf_params(name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    params
}

/// A leaf certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().expect("generate a key pair");
    let cert = leaf_params(name, sans, usage)
        .signed_by(&key, issuer)
        .expect("sign a certificate");
    (cert.pem(), key.serialize_pem())
}

/// A CA: (certificate PEM, issuer for signing).
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate a CA key pair");
    let params = ca_params(name);
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

impl Pki {
    /// Generates everything afresh (a few milliseconds).
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir for the test PKI");
        let (ca_pem, issuer) = ca("pushguard test CA");
        let (server_cert, server_key) = leaf(
            &issuer,
            "127.0.0.1",
            &["127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert_pem, client_key_pem) = leaf(
            &issuer,
            "pushguard-test-client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_ca_pem, other_issuer) = ca("an unrelated CA");
        let (stranger_cert, stranger_key) = leaf(
            &other_issuer,
            "stranger",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let d = dir.path();
        Pki {
            ca: write(d, "ca.pem", &ca_pem),
            server_cert: write(d, "server.pem", &server_cert),
            server_key: write(d, "server-key.pem", &server_key),
            client_cert: write(d, "client.pem", &client_cert_pem),
            client_key: write(d, "client-key.pem", &client_key_pem),
            client_combined: write(
                d,
                "client-combined.pem",
                &format!("{client_cert_pem}{client_key_pem}"),
            ),
            other_ca: write(d, "other-ca.pem", &other_ca_pem),
            stranger_cert: write(d, "stranger.pem", &stranger_cert),
            stranger_key: write(d, "stranger-key.pem", &stranger_key),
            ca_pem,
            client_cert_pem,
            client_key_pem,
            dir,
        }
    }

    /// The temp dir holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `tls_server_config` section of a web config serving the server
    /// certificate; with `require_client_cert`, only clients presenting a
    /// certificate signed by [`ca`](Self::ca) are let in.
    pub fn tls_server_config(&self, require_client_cert: bool) -> String {
        let mut yaml = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            self.server_cert.display(),
            self.server_key.display()
        );
        if require_client_cert {
            yaml.push_str(&format!(
                "  client_ca_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n",
                self.ca.display()
            ));
        }
        yaml
    }

    /// How the harness reaches a gateway serving [`tls_server_config`]:
    /// trusting the CA and presenting the client certificate.
    ///
    /// [`tls_server_config`]: Self::tls_server_config
    pub fn access(&self) -> Access {
        Access {
            ca_pem: Some(self.ca_pem.clone()),
            client: Some((self.client_cert_pem.clone(), self.client_key_pem.clone())),
            basic: None,
        }
    }
}

/// A bcrypt hash of `password` for `basic_auth_users`, at the lowest cost
/// (4): fast, and the gateway accepts any cost.
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt hash")
}

/// The `basic_auth_users` section of a web config with one user.
pub fn basic_auth_users(user: &str, password: &str) -> String {
    format!("basic_auth_users:\n  {user}: '{}'\n", bcrypt_hash(password))
}
