//! Secrets the control plane must show or use again (join tokens, registry passwords) are kept
//! sealed: encrypted with a key that lives outside the database file, so a copy of the file (a
//! backup, a stray `corral.db`) holds no usable join token or password. Secrets that are never shown again (API keys, session tokens,
//! host credentials) are only ever stored as hashes and need no key.
//!
//! The key is 32 random bytes; the cipher is XChaCha20-Poly1305, whose 24-byte nonces may be
//! drawn at random for every seal. A sealed value is `sealed1:` and the hex of nonce and
//! ciphertext. Each kind of secret is sealed under its own [`Domain`] (the cipher's associated
//! data), so a sealed password cannot be passed off as a join token or the other way round. Where the key is kept is the embedder's choice: a 0600 file for a headless
//! control plane ([`SealingKey::load_or_create`]), the OS keyring for the desktop app.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use std::path::Path;

/// What every sealed value starts with; a value without it was stored in plaintext by an older
/// version.
pub const SEALED_PREFIX: &str = "sealed1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// What a sealed secret is: bound to its ciphertext, so it opens only as what it was sealed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// An environment's join token.
    JoinToken,
    /// A registry's password, per environment.
    RegistryPassword,
}

impl Domain {
    fn associated_data(self) -> &'static [u8] {
        match self {
            // The join tokens' domain since sealing began: changing it would lose every token.
            Domain::JoinToken => b"corral join token",
            Domain::RegistryPassword => b"corral registry password",
        }
    }
}

/// The key secrets are sealed with.
#[derive(Clone)]
pub struct SealingKey([u8; KEY_LEN]);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// A key that cannot be used, with what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} the sealing key {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("the sealing key {0} is not 64 hex digits; move it away to start with a new key (join tokens are then replaced; joined hosts keep working)")]
    Malformed(String),
}

impl SealingKey {
    pub fn generate() -> SealingKey {
        let mut key = [0u8; KEY_LEN];
        rand::fill(&mut key[..]);
        SealingKey(key)
    }

    /// The key as 64 hex digits, for keyrings that store text.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<SealingKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(SealingKey(bytes.try_into().ok()?))
    }

    /// Reads the key from `path`, or creates it there (mode 0600, in a directory only its owner
    /// may enter) when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SealingKey, KeyError> {
        let io = |action, source| KeyError::Io { action, path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => SealingKey::from_hex(&text).ok_or_else(|| KeyError::Malformed(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SealingKey::generate();
                write_new_private(path, &key.to_hex()).map_err(|e| io("create", e))?;
                Ok(key)
            }
            Err(e) => Err(io("read", e)),
        }
    }

    pub fn seal(&self, domain: Domain, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let sealed = self
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: domain.associated_data() })
            .expect("XChaCha20-Poly1305 seals any message that fits in memory");
        format!("{SEALED_PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed))
    }

    /// The secret inside `sealed`; `None` when it was sealed with another key or as another
    /// domain, altered, or is not a sealed value at all.
    pub fn open(&self, domain: Domain, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self.cipher().decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: domain.associated_data() }).ok()?;
        String::from_utf8(plain).ok()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(&self.0))
    }
}

/// Writes `content` to a new file that only its owner may read; fails if the file exists, so a
/// key is never silently replaced.
fn write_new_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_unaltered() {
        let key = SealingKey::generate();
        let sealed = key.seal(Domain::JoinToken, "the-token");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("the-token"), "{sealed}");
        assert_eq!(key.open(Domain::JoinToken, &sealed).as_deref(), Some("the-token"));
        assert_ne!(key.seal(Domain::JoinToken, "the-token"), sealed, "every seal draws its own nonce");
        assert_eq!(SealingKey::generate().open(Domain::JoinToken, &sealed), None, "another key opens nothing");
        let mut altered = sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(key.open(Domain::JoinToken, &altered), None, "an altered value is refused");
        for junk in ["the-token", "sealed1:", "sealed1:zz", "sealed1:00"] {
            assert_eq!(key.open(Domain::JoinToken, junk), None, "{junk}");
        }
        assert_eq!(SealingKey::from_hex(&key.to_hex()).unwrap().open(Domain::JoinToken, &sealed).as_deref(), Some("the-token"));
        assert!(SealingKey::from_hex("abc").is_none());
        assert_eq!(format!("{key:?}"), "SealingKey(..)", "the key never reaches a log");
        let password = key.seal(Domain::RegistryPassword, "the-token");
        assert_eq!(key.open(Domain::RegistryPassword, &password).as_deref(), Some("the-token"));
        assert_eq!(key.open(Domain::JoinToken, &password), None, "a password does not open as a join token");
        assert_eq!(key.open(Domain::RegistryPassword, &sealed), None, "nor a join token as a password");
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.key");
        let key = SealingKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let again = SealingKey::load_or_create(&path).unwrap();
        assert_eq!(again.open(Domain::JoinToken, &key.seal(Domain::JoinToken, "x")).as_deref(), Some("x"));
        std::fs::write(&path, "not a key").unwrap();
        let err = SealingKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("is not 64 hex digits"), "{err}");
    }
}
