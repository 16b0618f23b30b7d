//! TLS for lethe's outgoing HTTPS (the command-line client, webhooks): one rustls configuration on
//! ring that trusts Mozilla's roots compiled into the binary, so a connection verifies the same on
//! every machine, plus an operator's own CA certificates for servers on a private CA.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA file larger than this is not read: a bundle of every public root is a few hundred KiB.
const MAX_CA_BYTES: u64 = 1 << 20;

/// The PEM certificates in `path`, at least one; errors say what is wrong with the file.
pub fn read_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_BYTES + 1).read_to_end(&mut pem).map_err(|e| format!("cannot read it: {e}"))?;
    if pem.len() as u64 > MAX_CA_BYTES {
        return Err("larger than 1 MiB".into());
    }
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certs)
}

/// A client configuration trusting the built-in roots and the certificates in `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        for cert in read_ca_certs(path)? {
            roots.add(cert).map_err(|e| format!("holds a certificate that is not a usable CA: {e}"))?;
        }
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}
