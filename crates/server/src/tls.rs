//! The control plane's own certificate authority, and TLS on its LAN listener.
//!
//! On the first start a CA is made in `DATA_DIR/tls/` (`ca.pem`, `ca.key`); it never leaves
//! the machine and nothing else trusts it. Agents and the CLI pin it by the SHA-256 of its DER
//! (`sha256:HEX`, shown in the join command), so no public CA and no DNS name is needed. The
//! server certificate (`server.pem`, `server.key`) is signed by it again on every start, with
//! the addresses the machine has then: a host that moved to another IP needs no new pin.

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Folder of the data dir that holds the CA and the server certificate.
pub const TLS_DIR: &str = "tls";
/// The CA certificate, also served at `GET /v1/ca.pem`.
pub const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca.key";
const SERVER_CERT_FILE: &str = "server.pem";
const SERVER_KEY_FILE: &str = "server.key";
/// A client that opens a connection and never finishes its handshake is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable CA ({reason}); move the tls folder away to make a new CA (every host must then join again)")]
    BadCa { path: PathBuf, reason: String },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
}

/// The CA's identity, for the join command and `GET /v1/ca.pem`.
#[derive(Debug, Clone)]
pub struct CaInfo {
    pub pem: String,
    /// `sha256:` and the lowercase hex SHA-256 of the CA certificate's DER.
    pub fingerprint: String,
}

/// The CA and a fresh server certificate, ready to serve.
pub struct Tls {
    pub ca: CaInfo,
    pub acceptor: TlsAcceptor,
    /// The server certificate, which can name more hosts while serving.
    pub certs: Arc<ServerCerts>,
}

/// `sha256:HEX` of a certificate's DER, the form `--ca-fingerprint` takes.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Loads the CA from `data_dir/tls` (making it on the first start) and signs a server
/// certificate for `names` plus this machine's addresses, `localhost` and `127.0.0.1`.
pub fn load_or_create(data_dir: &Path, names: &[String]) -> Result<Tls, TlsError> {
    let dir = data_dir.join(TLS_DIR);
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Io { path: dir.clone(), source })?;
    let (ca_key, ca_pem) = load_or_create_ca(&dir)?;
    let ca_der = pem_to_der(&ca_pem).map_err(|reason| TlsError::BadCa { path: dir.join(CA_CERT_FILE), reason })?;
    let names = subject_alt_names(names);
    let issuer = Issuer::new(ca_params(), ca_key);
    let current = sign(&issuer, &ca_der, &dir, &names)?;
    let certs = Arc::new(ServerCerts { issuer, ca_der: ca_der.clone(), dir, names: std::sync::Mutex::new(names), current: std::sync::RwLock::new(current) });
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(generate)?
        .with_no_client_auth()
        .with_cert_resolver(certs.clone());
    Ok(Tls { ca: CaInfo { fingerprint: fingerprint(&ca_der), pem: ca_pem }, acceptor: TlsAcceptor::from(Arc::new(config)), certs })
}

/// The server certificate, signed by the CA again whenever it must name one more host (an
/// administrator set an advertised URL with a new name), so agents that dial that name are
/// served a certificate for it at once, without a restart.
pub struct ServerCerts {
    issuer: Issuer<'static, KeyPair>,
    ca_der: Vec<u8>,
    dir: PathBuf,
    names: std::sync::Mutex<Vec<String>>,
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCerts").field("names", &self.names).finish_non_exhaustive()
    }
}

impl ServerCerts {
    /// Makes the certificate name `name` too (a host name or an address); nothing when it does.
    pub fn add_name(&self, name: &str) -> Result<(), TlsError> {
        let mut names = self.names.lock().expect("certificate names lock");
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Ok(());
        }
        let mut more = names.clone();
        more.push(name.to_string());
        let signed = sign(&self.issuer, &self.ca_der, &self.dir, &more)?;
        *self.current.write().expect("server certificate lock") = signed;
        *names = more;
        tracing::info!(%name, "the server certificate names a new host");
        Ok(())
    }

    /// The names the certificate is valid for now.
    pub fn names(&self) -> Vec<String> {
        self.names.lock().expect("certificate names lock").clone()
    }
}

/// A new key and certificate for `names`, signed by the CA and kept in the tls folder.
fn sign(issuer: &Issuer<'static, KeyPair>, ca_der: &[u8], dir: &Path, names: &[String]) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let server_key = KeyPair::generate().map_err(generate)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Corral control plane");
    params.is_ca = IsCa::NoCa;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let server_cert = params.signed_by(&server_key, issuer).map_err(generate)?;
    write_file(&dir.join(SERVER_CERT_FILE), &server_cert.pem(), false)?;
    write_file(&dir.join(SERVER_KEY_FILE), &server_key.serialize_pem(), true)?;
    // The CA goes in the chain too: clients find the pinned certificate among what is presented.
    let chain = vec![server_cert.der().clone(), CertificateDer::from(ca_der.to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(generate)?;
    Ok(Arc::new(certified))
}

impl rustls::server::ResolvesServerCert for ServerCerts {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().expect("server certificate lock").clone())
    }
}

fn generate(e: impl std::fmt::Display) -> TlsError {
    TlsError::Generate(e.to_string())
}

/// The CA's parameters. They are the same on every start, so the stored key with these
/// parameters signs exactly as the CA certificate made on the first start says.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "Corral control plane CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn load_or_create_ca(dir: &Path) -> Result<(KeyPair, String), TlsError> {
    let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    match (std::fs::read_to_string(&cert_path), std::fs::read_to_string(&key_path)) {
        (Ok(cert), Ok(key)) => {
            corral_store::files::make_private(&key_path).map_err(|source| TlsError::Io { path: key_path.clone(), source })?;
            let key = KeyPair::from_pem(&key).map_err(|e| TlsError::BadCa { path: key_path, reason: e.to_string() })?;
            Ok((key, cert))
        }
        (Err(e), _) | (_, Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            let path = if cert_path.exists() { key_path } else { cert_path };
            Err(TlsError::Io { path, source: e })
        }
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            Err(TlsError::BadCa { path: dir.to_path_buf(), reason: format!("one of {CA_CERT_FILE} and {CA_KEY_FILE} is missing") })
        }
        (Err(_), Err(_)) => {
            let key = KeyPair::generate().map_err(generate)?;
            let cert = ca_params().self_signed(&key).map_err(generate)?;
            write_file(&key_path, &key.serialize_pem(), true)?;
            write_file(&cert_path, &cert.pem(), false)?;
            tracing::info!(fingerprint = %fingerprint(cert.der()), "created the control plane's CA");
            Ok((key, cert.pem()))
        }
    }
}

/// The fingerprint of the CA already in `data_dir`, if there is one: on the control plane's own
/// machine the CLI trusts it without being told.
pub fn existing_ca_fingerprint(data_dir: &Path) -> Option<String> {
    let pem = std::fs::read_to_string(data_dir.join(TLS_DIR).join(CA_CERT_FILE)).ok()?;
    pem_to_der(&pem).ok().map(|der| fingerprint(&der))
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map(|c| c.to_vec()).map_err(|e| format!("not a PEM certificate: {e:?}"))
}

/// The names clients may use to reach this machine: the advertised ones, every address of
/// its interfaces, and loopback.
fn subject_alt_names(names: &[String]) -> Vec<String> {
    let mut all: Vec<String> = names.iter().filter(|n| !n.is_empty()).cloned().collect();
    all.extend(if_addrs::get_if_addrs().unwrap_or_default().into_iter().map(|iface| iface.ip().to_string()));
    all.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    let mut seen = std::collections::HashSet::new();
    all.retain(|n| seen.insert(n.clone()));
    all
}

fn write_file(path: &Path, content: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io { path: path.to_path_buf(), source };
    // A key is private also when an older version left its file readable.
    let mut file = if private { corral_store::files::create_private(path) } else { std::fs::File::create(path) }.map_err(io)?;
    file.write_all(content.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A TCP listener whose connections are TLS; handshakes run beside the accept loop, so one
/// slow or broken client delays nobody else.
pub struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::AbortHandle,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, tx)).abort_handle();
        Ok(TlsListener { incoming, local, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, remote)).await;
                }
                // Plain HTTP on the TLS port, a client that does not trust us, a port scanner.
                Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "no TLS handshake within the timeout"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(pair) => pair,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &["cp.lan".into()]).unwrap();
        let second = load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca.fingerprint, second.ca.fingerprint);
        assert!(first.ca.fingerprint.starts_with("sha256:") && first.ca.fingerprint.len() == 7 + 64);
        let der = pem_to_der(&std::fs::read_to_string(dir.path().join("tls/ca.pem")).unwrap()).unwrap();
        assert_eq!(fingerprint(&der), first.ca.fingerprint);
        #[cfg(unix)]
        for key in ["tls/ca.key", "tls/server.key"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn a_half_missing_ca_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), &[]).unwrap();
        std::fs::remove_file(dir.path().join("tls/ca.key")).unwrap();
        let err = load_or_create(dir.path(), &[]).err().expect("refused").to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
