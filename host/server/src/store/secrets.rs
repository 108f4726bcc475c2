//! An organization's secrets, encrypted at rest: registry credentials, git
//! credentials and build secrets. Each value is sealed with
//! ChaCha20-Poly1305 under the host's key, with a fresh random nonce, and
//! bound to its slot (organization, kind, name) as associated data, so a
//! sealed value copied to another slot does not open. Values leave this
//! module only toward the host's own engine and git calls, never toward a
//! plugin or an API answer.

use std::collections::BTreeMap;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{join_key, StoreError};

/// The kinds of secret an organization keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    /// Registry host → credentials (pushing, pulling private bases).
    Registry,
    /// Git host (or `*`) → credentials.
    Git,
    /// Name → value, for builds.
    Build,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Registry => "registry",
            SecretKind::Git => "git",
            SecretKind::Build => "build",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "registry" | "registryCredentials" => Some(SecretKind::Registry),
            "git" | "gitCredentials" => Some(SecretKind::Git),
            "build" | "buildSecrets" => Some(SecretKind::Build),
            _ => None,
        }
    }
}

/// Credentials for a registry or a git host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(default)]
    pub username: String,
    /// A password or a token (`token` is accepted as the same thing).
    #[serde(default, alias = "token")]
    pub password: String,
}

/// Why a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the secret key {path} is unusable: {message}")]
    Key { path: String, message: String },
    #[error("a stored secret does not open with this host's key (was the key replaced?)")]
    Undecryptable,
}

/// The host's sealing key.
pub struct SecretKey(Key);

impl SecretKey {
    /// Read the key file, creating it (32 random bytes, mode 0600) when it
    /// does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let key_error = |message: String| SecretError::Key {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = if bytes.len() == 64 {
                    hex::decode(&bytes).map_err(|e| key_error(e.to_string()))?
                } else {
                    bytes
                };
                if bytes.len() != 32 {
                    return Err(key_error(format!(
                        "it holds {} bytes; a key is 32 bytes (or 64 hex characters)",
                        bytes.len()
                    )));
                }
                Ok(SecretKey(*Key::from_slice(&bytes)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| key_error(e.to_string()))?;
                file.write_all(&bytes)
                    .map_err(|e| key_error(e.to_string()))?;
                file.sync_all().map_err(|e| key_error(e.to_string()))?;
                Ok(SecretKey(*Key::from_slice(&bytes)))
            }
            Err(e) => Err(key_error(e.to_string())),
        }
    }
}

/// Sealed secrets in the store's `secrets` tree.
pub struct SecretStore {
    tree: sled::Tree,
    cipher: ChaCha20Poly1305,
}

fn slot(org: &str, kind: SecretKind, name: &str) -> Vec<u8> {
    join_key(&[org.as_bytes(), kind.as_str().as_bytes(), name.as_bytes()])
}

impl SecretStore {
    pub(super) fn new(tree: sled::Tree, key: &SecretKey) -> Self {
        SecretStore {
            tree,
            cipher: ChaCha20Poly1305::new(&key.0),
        }
    }

    /// Seal and store a value, replacing any old one.
    pub fn put(
        &self,
        org: &str,
        kind: SecretKind,
        name: &str,
        value: &[u8],
    ) -> Result<(), SecretError> {
        let key = slot(org, kind, name);
        let sealed = self.seal(&key, value)?;
        self.tree.insert(key, sealed).map_err(StoreError::from)?;
        Ok(())
    }

    /// Open a stored value.
    pub fn get(
        &self,
        org: &str,
        kind: SecretKind,
        name: &str,
    ) -> Result<Option<Vec<u8>>, SecretError> {
        let key = slot(org, kind, name);
        let Some(stored) = self.tree.get(&key).map_err(StoreError::from)? else {
            return Ok(None);
        };
        self.open(&key, &stored).map(Some)
    }

    /// `value` sealed (nonce, then ciphertext), bound to `context`: it
    /// opens only with the same context, so a sealed value moved to
    /// another record does not open there.
    pub fn seal(&self, context: &[u8], value: &[u8]) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: context,
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(stored)
    }

    /// A text sealed as [`SecretStore::seal`] does, as hex: what a JSON
    /// record keeps (a project's or a webhook's secret).
    pub fn seal_text(&self, context: &[u8], text: &str) -> Result<String, SecretError> {
        self.seal(context, text.as_bytes()).map(hex::encode)
    }

    /// Open what [`SecretStore::seal_text`] sealed with the same `context`.
    pub fn open_text(&self, context: &[u8], sealed_hex: &str) -> Result<String, SecretError> {
        let sealed = hex::decode(sealed_hex).map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(self.open(context, &sealed)?).map_err(|_| SecretError::Undecryptable)
    }

    /// Open what [`SecretStore::seal`] sealed with the same `context`.
    pub fn open(&self, context: &[u8], stored: &[u8]) -> Result<Vec<u8>, SecretError> {
        if stored.len() < 12 {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, sealed) = stored.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| SecretError::Undecryptable)
    }

    /// `org`'s sealed image-signing key (PKCS#8 DER), made by `make` the
    /// first time it is asked for. It lives beside the secrets, sealed the
    /// same way, but under a slot no secrets call lists, reads or deletes.
    /// Two first callers at once get the same key: the first one stored.
    pub fn signing_key(
        &self,
        org: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, SecretError> {
        let key = join_key(&[org.as_bytes(), b"signing-key", b"ecdsa-p256"]);
        if let Some(stored) = self.tree.get(&key).map_err(StoreError::from)? {
            return self.open(&key, &stored);
        }
        let made = make();
        let sealed = self.seal(&key, &made)?;
        match self
            .tree
            .compare_and_swap(&key, None::<&[u8]>, Some(sealed))
            .map_err(StoreError::from)?
        {
            Ok(()) => Ok(made),
            Err(lost) => {
                let stored = lost.current.ok_or(SecretError::Undecryptable)?;
                self.open(&key, &stored)
            }
        }
    }

    /// Remove a value; whether it existed.
    pub fn delete(&self, org: &str, kind: SecretKind, name: &str) -> Result<bool, SecretError> {
        Ok(self
            .tree
            .remove(slot(org, kind, name))
            .map_err(StoreError::from)?
            .is_some())
    }

    /// The names an organization has, by kind.
    pub fn names(&self, org: &str) -> Result<BTreeMap<SecretKind, Vec<String>>, SecretError> {
        let mut out: BTreeMap<SecretKind, Vec<String>> = BTreeMap::new();
        for entry in self.tree.scan_prefix(join_key(&[org.as_bytes(), b""])) {
            let (key, _) = entry.map_err(StoreError::from)?;
            let rest = &key[org.len() + 1..];
            let Some(split) = rest.iter().position(|b| *b == 0) else {
                continue;
            };
            let kind = String::from_utf8_lossy(&rest[..split]);
            let name = String::from_utf8_lossy(&rest[split + 1..]).into_owned();
            if let Some(kind) = SecretKind::parse(&kind) {
                out.entry(kind).or_default().push(name);
            }
        }
        Ok(out)
    }

    /// A registry or git credential.
    pub fn credential(
        &self,
        org: &str,
        kind: SecretKind,
        host: &str,
    ) -> Result<Option<Credential>, SecretError> {
        Ok(self
            .get(org, kind, host)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_sealed_bound_to_their_slot_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("secret.key");
        let key = SecretKey::load_or_create(&key_path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("secrets").unwrap();
        let store = SecretStore::new(tree.clone(), &key);
        store
            .put("acme", SecretKind::Build, "NPM_TOKEN", b"tok-123456")
            .unwrap();
        assert_eq!(
            store
                .get("acme", SecretKind::Build, "NPM_TOKEN")
                .unwrap()
                .unwrap(),
            b"tok-123456"
        );
        assert_eq!(
            store.get("other", SecretKind::Build, "NPM_TOKEN").unwrap(),
            None
        );
        // Raw bytes hold no plaintext.
        let raw = tree
            .get(slot("acme", SecretKind::Build, "NPM_TOKEN"))
            .unwrap()
            .unwrap();
        assert!(!raw.windows(10).any(|w| w == b"tok-123456"));
        // Moved to another slot, it does not open.
        tree.insert(slot("evil", SecretKind::Build, "NPM_TOKEN"), raw)
            .unwrap();
        assert!(matches!(
            store.get("evil", SecretKind::Build, "NPM_TOKEN"),
            Err(SecretError::Undecryptable)
        ));
        let names = store.names("acme").unwrap();
        assert_eq!(names[&SecretKind::Build], vec!["NPM_TOKEN".to_string()]);
        // The same key file gives the same key.
        let again = SecretKey::load_or_create(&key_path).unwrap();
        let store2 = SecretStore::new(db.open_tree("secrets").unwrap(), &again);
        assert!(store2
            .get("acme", SecretKind::Build, "NPM_TOKEN")
            .unwrap()
            .is_some());
    }
}
