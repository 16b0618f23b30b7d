//! A test CA and a server certificate it issued, made with the `openssl` CLI, for the tests that speak
//! TLS (mail over STARTTLS and implicit TLS; the command-line client's https).

use std::path::PathBuf;
use std::process::Command;

/// The CA certificate, and a certificate with its key for the names in `san`, in `dir`.
#[derive(Debug)]
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// `san` is an openssl subjectAltName value, e.g. `DNS:localhost,IP:127.0.0.1`.
    pub fn make(san: &str) -> Certs {
        let dir = tempfile::tempdir().expect("temporary directory");
        let p = |name: &str| dir.path().join(name);
        let run = |args: &[String]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output();
            let out = out.expect("the TLS tests need the openssl command (apt-get install openssl)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let args = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let mut ca = args(&format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2"));
        ca.extend(
            ["-subj", "/CN=lethe test CA", "-addext", "basicConstraints=critical,CA:TRUE"].map(String::from),
        );
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"].map(String::from));
        run(&ca);
        run(&args(&format!("req {ec} -keyout server.key -out server.csr -subj /CN=lethe-test-server")));
        std::fs::write(
            p("ext.cnf"),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=serverAuth\n"
            ),
        )
        .expect("write the extensions");
        run(&args(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
             -extfile ext.cnf",
        ));
        Certs { ca: p("ca.pem"), cert: p("server.pem"), key: p("server.key"), dir }
    }
}
