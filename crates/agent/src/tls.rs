//! TLS to a control plane whose CA is pinned by fingerprint (`--ca-fingerprint sha256:HEX`).
//!
//! The control plane makes its own CA; nothing else trusts it, and nothing but its fingerprint
//! is needed to trust it here: the chain the server presents must contain the certificate whose
//! SHA-256 is the pin, and the server certificate must be signed by it. The agent and the CLI
//! use this same verifier.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::WebSocketStream;

/// A pinned CA: the SHA-256 of its certificate's DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Parses `sha256:HEX` (the form the join command shows); colons between bytes are allowed.
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let hex_part = text.trim();
        let hex_part = hex_part.strip_prefix("sha256:").or_else(|| hex_part.strip_prefix("SHA256:")).unwrap_or(hex_part);
        let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&digits)
            .map_err(|_| format!("CA fingerprint {text:?} is not sha256: followed by 64 hex digits; copy it from `corral host join-command`"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("CA fingerprint {text:?} has {} bytes, a SHA-256 has 32; copy it from `corral host join-command`", b.len()))?;
        Ok(Fingerprint(bytes))
    }

    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// The server presented a CA other than the pinned one.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the control plane's CA is {presented}, but {pinned} is pinned (--ca-fingerprint); refusing to connect. \
     If the control plane was set up again, copy the new join command; otherwise something else answers at this address"
)]
pub struct PinMismatch {
    pub pinned: Fingerprint,
    pub presented: Fingerprint,
}

/// Accepts only a chain that carries the pinned CA, and a server certificate it signed.
#[derive(Debug)]
pub struct PinnedCa {
    pin: Fingerprint,
    provider: Arc<CryptoProvider>,
}

impl PinnedCa {
    pub fn new(pin: Fingerprint) -> PinnedCa {
        PinnedCa { pin, provider: Arc::new(rustls::crypto::ring::default_provider()) }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = || std::iter::once(end_entity).chain(intermediates);
        let Some(ca) = presented().find(|c| Fingerprint::of(c) == self.pin) else {
            // The last certificate of the chain is the one that plays the CA.
            let root = presented().last().unwrap_or(end_entity);
            let mismatch = PinMismatch { pinned: self.pin, presented: Fingerprint::of(root) };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(mismatch)))));
        };
        if ca == end_entity {
            // The pin names the server's own certificate: nothing else to check.
            return Ok(ServerCertVerified::assertion());
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone()).build().map_err(|e| rustls::Error::General(e.to_string()))?;
        match webpki.verify_server_cert(end_entity, &[], server_name, ocsp_response, now) {
            // Only the control plane holds its CA's key, so a certificate that CA signed is the
            // control plane's, whatever name or address it is reached by (NAT, a new DNS name).
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls client config that trusts only the pinned CA (also for reqwest's
/// `use_preconfigured_tls`).
pub fn client_config(pin: Fingerprint) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(pin)))
        .with_no_client_auth()
}

/// The pin mismatch behind a failed connection, if that is what failed.
pub fn pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) = e.downcast_ref::<rustls::Error>() {
            if let Some(m) = other.0.downcast_ref::<PinMismatch>() {
                return Some(m.clone());
            }
        }
        if let Some(m) = e.downcast_ref::<PinMismatch>() {
            return Some(m.clone());
        }
        // tokio-rustls hands rustls errors over inside an io::Error, whose `source` skips it.
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Any stream a WebSocket can run on: plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub type WebSocket = WebSocketStream<Box<dyn Stream>>;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Mismatch(#[from] PinMismatch),
    #[error("{0} is a TLS (wss/https) address: pass the control plane's --ca-fingerprint (shown by `corral host join-command`)")]
    NoPin(String),
    #[error("{0}")]
    Failed(String),
    /// The server answered the upgrade with an HTTP error.
    #[error("HTTP {}", .0.status())]
    Http(Box<tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>>),
}

/// Opens a WebSocket to `request` (`ws://` or `wss://`); a `wss://` one needs `pin`. Also
/// returns the local address the connection uses.
pub async fn connect_websocket(request: impl IntoClientRequest, pin: Option<Fingerprint>) -> Result<(WebSocket, Option<IpAddr>), ConnectError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let request = request.into_client_request().map_err(|e| ConnectError::Failed(e.to_string()))?;
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(ConnectError::Failed(format!("{uri} is not a ws:// or wss:// address"))),
    };
    let host = uri.host().ok_or_else(|| ConnectError::Failed(format!("{uri} has no host")))?;
    // `[::1]` in a URI is `::1` to the resolver and to TLS.
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| ConnectError::Failed(format!("cannot connect to {host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let local_ip = tcp.local_addr().ok().map(|a| a.ip());
    let stream: Box<dyn Stream> = if secure {
        let pin = pin.ok_or_else(|| ConnectError::NoPin(uri.to_string()))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| ConnectError::Failed(format!("{host} is not a valid server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(pin)));
        match connector.connect(name, tcp).await {
            Ok(tls) => Box::new(tls),
            Err(e) => {
                return Err(match pin_mismatch(&e) {
                    Some(m) => ConnectError::Mismatch(m),
                    None => ConnectError::Failed(format!("TLS handshake with {host}:{port} failed: {e}")),
                })
            }
        }
    } else {
        Box::new(tcp)
    };
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok((ws, local_ip)),
        Err(WsError::Http(response)) => Err(ConnectError::Http(response)),
        Err(e) => Err(ConnectError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { params, key, der }
    }

    fn server_cert(ca: &Ca, names: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }

    fn verify(pin: &Ca, chain: &[CertificateDer<'static>], name: &str) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        PinnedCa::new(Fingerprint::of(&pin.der)).verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
    }

    #[test]
    fn the_pinned_ca_is_accepted_by_any_name_it_signed_for() {
        let ca = ca("cp");
        let chain = [server_cert(&ca, &["10.0.0.5"]), ca.der.clone()];
        verify(&ca, &chain, "10.0.0.5").unwrap();
        // Reached through another address (NAT, new DNS name): the CA's signature is what counts.
        verify(&ca, &chain, "cp.example").unwrap();
    }

    #[test]
    fn another_ca_is_refused_naming_both_fingerprints() {
        let (ours, theirs) = (ca("cp"), ca("impostor"));
        let chain = [server_cert(&theirs, &["10.0.0.5"]), theirs.der.clone()];
        let err = verify(&ours, &chain, "10.0.0.5").unwrap_err();
        let mismatch = pin_mismatch(&err).expect("a pin mismatch");
        assert_eq!((mismatch.pinned, mismatch.presented), (Fingerprint::of(&ours.der), Fingerprint::of(&theirs.der)));
        let text = mismatch.to_string();
        assert!(text.contains(&Fingerprint::of(&ours.der).to_string()) && text.contains(&Fingerprint::of(&theirs.der).to_string()), "{text}");
    }

    #[test]
    fn presenting_the_pinned_ca_without_its_signature_is_refused() {
        // An impostor can copy the public CA certificate into its chain, but cannot sign with it.
        let (ours, theirs) = (ca("cp"), ca("cp"));
        let chain = [server_cert(&theirs, &["10.0.0.5"]), ours.der.clone()];
        let err = verify(&ours, &chain, "10.0.0.5").unwrap_err();
        assert!(pin_mismatch(&err).is_none(), "{err}");
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn a_chain_without_a_ca_is_refused() {
        let ours = ca("cp");
        let chain = [server_cert(&ours, &["10.0.0.5"])];
        assert!(pin_mismatch(&verify(&ours, &chain, "10.0.0.5").unwrap_err()).is_some());
    }

    #[test]
    fn fingerprints_parse_in_the_join_commands_form() {
        let hex = "ab".repeat(32);
        let fp = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(fp.to_string(), format!("sha256:{hex}"));
        assert_eq!(Fingerprint::parse(&hex).unwrap(), fp);
        let with_colons: Vec<&str> = std::iter::repeat_n("AB", 32).collect();
        assert_eq!(Fingerprint::parse(&format!("SHA256:{}", with_colons.join(":"))).unwrap(), fp);
        for bad in ["", "sha256:xyz", "sha256:abcd", "md5:00"] {
            let e = Fingerprint::parse(bad).unwrap_err();
            assert!(e.contains("join-command"), "{bad}: {e}");
        }
    }
}
