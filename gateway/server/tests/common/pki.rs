//! Certificates made by the tests with the `openssl` CLI (never committed keys): a CA, server
//! certificates it signs (ECDSA P-256 or RSA), client certificates for mTLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TempDir;

/// Files of one certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    pub fn cert_pem(&self) -> String {
        std::fs::read_to_string(&self.cert).unwrap()
    }

    pub fn key_pem(&self) -> String {
        std::fs::read_to_string(&self.key).unwrap()
    }
}

/// Which key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    EcP256,
    Rsa2048,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_key(dir: &Path, name: &str, alg: Alg) -> PathBuf {
    let key = format!("{name}.key");
    match alg {
        Alg::EcP256 => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        ),
        Alg::Rsa2048 => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ],
        ),
    }
    dir.join(key)
}

/// A certificate authority in its own directory.
pub struct Ca {
    pub dir: TempDir,
    pub issued: Issued,
    serial: u32,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let label: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = TempDir::new(&format!("pki-{label}"));
        let key = new_key(dir.path(), "ca", Alg::EcP256);
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-days",
                "30",
                "-subj",
                &format!("/O=Tollgate Tests/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                "ca.crt",
            ],
        );
        Self {
            issued: Issued {
                cert: dir.path().join("ca.crt"),
                key,
            },
            dir,
            serial: 0x1000,
        }
    }

    pub fn cert(&self) -> &Path {
        &self.issued.cert
    }

    fn sign(&mut self, name: &str, alg: Alg, subject: &str, ext: &str, days: &str) -> Issued {
        let d = self.dir.path();
        let key = new_key(d, name, alg);
        let csr = format!("{name}.csr");
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                subject,
                "-out",
                &csr,
            ],
        );
        std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
        self.serial += 1;
        let serial = format!("0x{:x}", self.serial);
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                days,
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ],
        );
        Issued {
            cert: d.join(format!("{name}.crt")),
            key,
        }
    }

    /// A server certificate for `names` (DNS SANs; the first is the CN).
    pub fn server(&mut self, file: &str, names: &[&str], alg: Alg) -> Issued {
        let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        let ext = format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            sans.join(",")
        );
        self.sign(file, alg, &format!("/CN={}", names[0]), &ext, "20")
    }

    /// A client certificate with this subject (`/O=Partner/CN=client-1`).
    pub fn client(&mut self, file: &str, subject: &str) -> Issued {
        self.sign(
            file,
            Alg::EcP256,
            subject,
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            "20",
        )
    }
}

/// The serial (lower-case hex, no leading zeros) openssl prints for a certificate file.
pub fn serial_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    hex.trim_start_matches('0').to_owned()
}
