//! Certificates for TLS tests, made fresh per run with rcgen: a CA, a server certificate for
//! `localhost` and `127.0.0.1`, a client certificate, and an unrelated CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files in a temporary directory (removed on drop).
#[derive(Debug)]
pub struct TlsFiles {
    dir: tempfile::TempDir,
}

impl TlsFiles {
    /// Writes `ca.pem`, `server.pem`/`server.key` (signed by the CA), `client.pem`/`client.key`
    /// (signed by the CA) and `other-ca.pem` (a CA that signed none of them).
    pub fn generate() -> TlsFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles { dir };
        let ca = authority("wa-testkit CA");
        files.write("ca.pem", &ca.pem());
        let server = leaf(
            &ca,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        files.write("server.pem", &server.0);
        files.write("server.key", &server.1);
        let client = leaf(
            &ca,
            vec!["wa-testkit-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        files.write("client.pem", &client.0);
        files.write("client.key", &client.1);
        files.write("other-ca.pem", &authority("wa-testkit other CA").pem());
        files
    }

    fn write(&self, name: &str, pem: &str) {
        std::fs::write(self.dir.path().join(name), pem).expect("write a PEM file");
    }

    /// The path of one of the files above.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        assert!(path.is_file(), "no {name} among the generated TLS files");
        path
    }

    /// The directory holding them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(names.clone()).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}
