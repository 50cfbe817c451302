//! The cluster's certificates: a CA made at first start, the API server's serving
//! certificate, client certificates (the admin's, nodes'), and the admin kubeconfig.
//!
//! Files live in `<data-dir>/tls/` as PEM. They are reused across restarts; a serving
//! certificate is re-issued when the names it must carry change or it nears expiry.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Certificate handling failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file under the TLS directory failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// rcgen could not make or parse a certificate or key.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA, able to issue certificates.
pub struct Pki {
    dir: PathBuf,
    pub ca: CertPair,
}

const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;
/// A leaf certificate with fewer days left than this is re-issued at start.
const RENEW_DAYS: i64 = 30;

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl Pki {
    /// Loads the CA from `<dir>`, creating it on first start.
    pub fn load_or_create(dir: &Path) -> Result<Pki, PkiError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let ca = if cert_path.exists() && key_path.exists() {
            CertPair {
                cert_pem: fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?,
                key_pem: fs::read_to_string(&key_path).map_err(io_err(&key_path))?,
            }
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(
                DnType::CommonName,
                format!("rkube-ca@{}", jiff::Timestamp::now().as_second()),
            );
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, CA_DAYS);
            let cert = params.self_signed(&key)?;
            let pair = CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            };
            write_private(&key_path, &pair.key_pem)?;
            write_public(&cert_path, &pair.cert_pem)?;
            pair
        };
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn issue(&self, params: CertificateParams) -> Result<CertPair, PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a client certificate: the user name is the CN, groups the O entries.
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<CertPair, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        dn.push(DnType::CommonName, user);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, LEAF_DAYS);
        self.issue(params)
    }

    /// Issues a serving certificate for DNS names and IPs.
    pub fn issue_server(
        &self,
        cn: &str,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<CertPair, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        for n in names {
            params
                .subject_alt_names
                .push(SanType::DnsName(n.clone().try_into()?));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, LEAF_DAYS);
        self.issue(params)
    }

    /// A certificate pair kept in `<name>.crt`/`<name>.key`, issued by `make` when
    /// missing, when `fingerprint` (what it must carry) changed, or near expiry.
    pub fn load_or_issue(
        &self,
        name: &str,
        fingerprint: &str,
        make: impl FnOnce(&Pki) -> Result<CertPair, PkiError>,
    ) -> Result<CertPair, PkiError> {
        let cert_path = self.dir.join(format!("{name}.crt"));
        let key_path = self.dir.join(format!("{name}.key"));
        let fp_path = self.dir.join(format!("{name}.names"));
        if let (Ok(cert_pem), Ok(key_pem), Ok(fp)) = (
            fs::read_to_string(&cert_path),
            fs::read_to_string(&key_path),
            fs::read_to_string(&fp_path),
        ) && fp == fingerprint
            && days_left(&cert_pem).is_some_and(|d| d > RENEW_DAYS)
        {
            return Ok(CertPair { cert_pem, key_pem });
        }
        let pair = make(self)?;
        write_private(&key_path, &pair.key_pem)?;
        write_public(&cert_path, &pair.cert_pem)?;
        write_public(&fp_path, fingerprint)?;
        Ok(pair)
    }
}

/// The user of the API server's client certificate towards kubelets.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

impl Pki {
    /// The API server's client certificate for kubelets (`kube-apiserver-kubelet-client`,
    /// in `system:masters`), kept in `client-kube-apiserver-kubelet-client.crt`.
    pub fn kubelet_client(&self) -> Result<CertPair, PkiError> {
        self.load_or_issue(
            "client-kube-apiserver-kubelet-client",
            "kube-apiserver-kubelet-client/system:masters",
            |p| p.issue_client(KUBELET_CLIENT_USER, &["system:masters"]),
        )
    }

    /// A kubelet's serving certificate for its node name and addresses, kept in
    /// `serving-kubelet-<node>.crt`.
    pub fn kubelet_serving(&self, node: &str, ips: &[IpAddr]) -> Result<CertPair, PkiError> {
        let names = vec![node.to_string()];
        self.load_or_issue(
            &format!("serving-kubelet-{node}"),
            &format!("{names:?}{ips:?}"),
            |p| p.issue_server(&format!("system:node:{node}"), &names, ips),
        )
    }
}

/// Days until a PEM certificate expires.
fn days_left(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some((not_after - jiff::Timestamp::now().as_second()) / 86400)
}

fn write_with_mode(path: &Path, content: &str, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(content.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn write_private(path: &Path, content: &str) -> Result<(), PkiError> {
    write_with_mode(path, content, 0o600)
}

fn write_public(path: &Path, content: &str) -> Result<(), PkiError> {
    write_with_mode(path, content, 0o644)
}

/// Writes a kubeconfig with embedded certificates (mode 0600).
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    client: &CertPair,
    user: &str,
) -> Result<(), PkiError> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let content = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: rkube
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: rkube
  context:
    cluster: rkube
    user: {user}
current-context: rkube
",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    );
    write_private(path, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_issues_client_and_server_certificates_and_is_reused() {
        let dir = std::env::temp_dir().join(format!("rkube-pki-{}", uuid::Uuid::new_v4()));
        let pki = Pki::load_or_create(&dir).unwrap();
        let client = pki
            .issue_client("system:admin", &["system:masters"])
            .unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(client.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, "system:admin");
        let org = cert
            .subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(org, "system:masters");
        let server = pki
            .load_or_issue("server", "a", |p| {
                p.issue_server(
                    "kube-apiserver",
                    &["localhost".into()],
                    &["127.0.0.1".parse().unwrap()],
                )
            })
            .unwrap();
        let again = pki
            .load_or_issue("server", "a", |_| panic!("must reuse"))
            .unwrap();
        assert_eq!(server.cert_pem, again.cert_pem);
        let reloaded = Pki::load_or_create(&dir).unwrap();
        assert_eq!(reloaded.ca.cert_pem, pki.ca.cert_pem);
        fs::remove_dir_all(&dir).unwrap();
    }
}
