//! TLS settings, checked at build time: the roots a receiver's certificate must chain to, and
//! the client certificate for mutual TLS. rustls with the ring provider, pinned, so a program
//! that installs another process-default provider changes nothing here.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::error::{Error, ErrorKind};
use crate::transport::conn::TlsTarget;

fn tls_error(message: &str) -> Error {
    Error::new(ErrorKind::Tls, message)
}

/// The TLS settings for a receiver named `host` (a name or an IP address, no brackets):
/// `roots` replace the Mozilla roots when there is any; `client` is a certificate chain and
/// its private key, in PEM.
pub(crate) fn target(
    host: &str,
    roots: &[Vec<u8>],
    client: Option<(&[u8], &[u8])>,
) -> Result<TlsTarget, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("no TLS version to use").with_source(e))?;
    let mut store = RootCertStore::empty();
    if roots.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for pem in roots {
            for cert in certificates(pem, "add_root_certificate")? {
                // A root that cannot be used would fail every record: refuse it now.
                store.add(cert).map_err(|e| {
                    tls_error("invalid certificate in the PEM given to add_root_certificate")
                        .with_source(e)
                })?;
            }
        }
    }
    let builder = builder.with_root_certificates(store);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = certificates(chain, "client_certificate")?;
            // The key's own errors could quote key material: keep only our messages.
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
                tls_error("no valid private key in the PEM given to client_certificate")
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => tls_error(
                        "the private key given to client_certificate is not the certificate's key",
                    ),
                    rustls::Error::InvalidCertificate(_) => {
                        tls_error("invalid certificate in the PEM given to client_certificate")
                    }
                    _ => tls_error("no valid private key in the PEM given to client_certificate"),
                })?
        }
    };
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| {
        Error::new(
            ErrorKind::InvalidHost,
            format!("invalid host {host:?} for TLS: it is not a DNS name or an IP address"),
        )
        .with_source(e)
    })?;
    Ok(TlsTarget {
        config: Arc::new(config),
        server_name,
    })
}

/// The certificates in `pem`, at least one.
fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(pem) {
        certs.push(
            cert.map_err(|e| tls_error(&format!("invalid PEM given to {what}")).with_source(e))?,
        );
    }
    if certs.is_empty() {
        return Err(tls_error(&format!(
            "no certificate in the PEM given to {what}"
        )));
    }
    Ok(certs)
}
