//! The host's X25519 key pair, kept in a private file.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use boringtun::x25519;

use crate::error::{OverlayError, Result};

/// A peer's (or this host's) public key. Shown and parsed as base64, WireGuard's usual form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = OverlayError;
    fn from_str(s: &str) -> Result<Self> {
        let bytes = BASE64.decode(s.trim()).map_err(|e| OverlayError::PublicKeyInvalid { reason: e.to_string() })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| OverlayError::PublicKeyInvalid { reason: format!("{} bytes", b.len()) })?;
        Ok(PublicKey(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// This host's key pair. The private half never leaves the key file and this value (it is not
/// printed by `Debug`).
#[derive(Clone)]
pub struct KeyPair {
    secret: x25519::StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new random key pair (not saved).
    pub fn generate() -> Self {
        Self::from_secret(rand::random::<[u8; 32]>())
    }

    fn from_secret(bytes: [u8; 32]) -> Self {
        let secret = x25519::StaticSecret::from(bytes);
        let public = PublicKey(x25519::PublicKey::from(&secret).to_bytes());
        KeyPair { secret, public }
    }

    /// Reads the key pair from `path`, or makes one and saves it there (mode 0600, written whole
    /// or not at all) when the file does not exist. A key file others can read is made private
    /// again, with a warning: the key is what lets peers trust this host.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let invalid = |reason: String| OverlayError::KeyInvalid { path: path.to_owned(), reason };
                let bytes = BASE64.decode(text.trim()).map_err(|e| invalid(format!("not base64: {e}")))?;
                let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| invalid(format!("{} bytes, expected 32", b.len())))?;
                Self::make_private(path)?;
                Ok(Self::from_secret(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = Self::generate();
                pair.save_new(path)?;
                tracing::info!(path = %path.display(), public_key = %pair.public, "made a new overlay key pair");
                Ok(pair)
            }
            Err(source) => Err(OverlayError::KeyRead { path: path.to_owned(), source }),
        }
    }

    fn make_private(path: &Path) -> Result<()> {
        let read_err = |source| OverlayError::KeyRead { path: path.to_owned(), source };
        let mode = std::fs::metadata(path).map_err(read_err)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "overlay key file was readable by others; making it 0600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| OverlayError::KeyWrite { path: path.to_owned(), source })?;
        }
        Ok(())
    }

    /// Writes a temporary file (0600, as tempfile makes them) beside `path` and renames it into
    /// place without replacing an existing file, so a crash never leaves half a key and two
    /// racing starts keep one key.
    fn save_new(&self, path: &Path) -> Result<()> {
        let write_err = |source| OverlayError::KeyWrite { path: path.to_owned(), source };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut file = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(write_err)?;
        writeln!(file, "{}", BASE64.encode(self.secret.to_bytes())).map_err(write_err)?;
        file.as_file().sync_all().map_err(write_err)?;
        file.persist_noclobber(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }

    /// The public half, to hand to peers (base64 with `to_string()`).
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub(crate) fn secret(&self) -> &x25519::StaticSecret {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.key");
        let a = KeyPair::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), KeyPair::generate().public_key());
        // The file holds the private key, not the public one.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&a.public_key().to_string()));
    }

    #[test]
    fn loose_key_file_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.key");
        let a = KeyPair::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let b = KeyPair::load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn bad_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("overlay.key");
        std::fs::write(&path, "not a key\n").unwrap();
        let err = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("does not hold a key"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key\n");
        std::fs::write(&path, "AAAA\n").unwrap();
        let err = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("3 bytes, expected 32"), "{err}");
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope").join("overlay.key");
        let err = KeyPair::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("cannot write the overlay key file"), "{err}");
    }

    #[test]
    fn public_key_round_trips_as_base64() {
        let k = KeyPair::generate().public_key();
        let s = k.to_string();
        assert_eq!(s.len(), 44);
        assert_eq!(s.parse::<PublicKey>().unwrap(), k);
        assert!("AAAA".parse::<PublicKey>().is_err());
        assert!("!!".parse::<PublicKey>().is_err());
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), k);
    }
}
