//! Node identity keys: ECDSA P-256, stored as an encrypted PKCS#8 PEM interchangeable with koi-net's
//! `priv_key.pem`, and the raw `r||s` signatures koi-net exchanges.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use p256::SecretKey;
use pkcs8::pkcs5::pbes2;
use rand::rngs::OsRng;
use rand::RngCore;

use super::rid::{NodeRid, RidError};

/// PBKDF2 iterations for the key file. Python's `BestAvailableEncryption` uses PBKDF2-HMAC-SHA256 and
/// AES-256-CBC too; this count keeps loading fast at start-up while far above brute-force comfort.
const PBKDF2_ITERATIONS: u32 = 100_000;

/// Problems with keys and key files. Each names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a PEM-encoded encrypted PKCS#8 key, or the password is wrong (PKCS#8 cannot tell the two
    /// apart without the password).
    #[error(
        "key file {path} could not be decrypted: wrong password, or not an encrypted PKCS#8 P-256 key ({detail}). \
         Check the password variable; if the file is corrupt, restore it from backup — deleting it gives this \
         node a new identity"
    )]
    Decrypt {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        detail: String,
    },
    /// The key could not be encoded.
    #[error("could not encode the key: {0}")]
    Encode(String),
    /// A public key string from a profile is not base64 DER of a P-256 key.
    #[error("public key `{key}` is not base64 DER of a P-256 SubjectPublicKeyInfo: {detail}")]
    BadPublicKey {
        /// The string (shortened).
        key: String,
        /// What failed.
        detail: String,
    },
    /// A node RID could not be built from the key.
    #[error(transparent)]
    Rid(#[from] RidError),
}

/// A signature failed to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not base64.
    #[error("signature is not valid base64")]
    NotBase64,
    /// Not the 64 bytes of raw `r||s`.
    #[error("signature is {0} bytes; a P-256 raw r||s signature is 64")]
    WrongLength(usize),
    /// Well-formed but not made by this key over these bytes.
    #[error("signature does not match the signed bytes and the sender's key")]
    Mismatch,
}

/// This node's private key.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public.to_base64())
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A new random key.
    pub fn generate() -> NodeKey {
        NodeKey::from_secret(SecretKey::random(&mut OsRng))
    }

    fn from_secret(secret: SecretKey) -> NodeKey {
        let signing = SigningKey::from(secret);
        let public = PublicKey {
            verifying: *signing.verifying_key(),
        };
        NodeKey { signing, public }
    }

    /// Encrypted PKCS#8 PEM (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC), as koi-net writes `priv_key.pem`.
    pub fn to_encrypted_pem(&self, password: &str) -> Result<String, KeyError> {
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut iv);
        let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let encrypted = info
            .encrypt_with_params(params, password.as_bytes())
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let pem = encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(pem.to_string())
    }

    /// Decrypts a PEM written by [`NodeKey::to_encrypted_pem`] or by koi-net.
    pub fn from_encrypted_pem(pem: &str, password: &str, path: &Path) -> Result<NodeKey, KeyError> {
        SecretKey::from_pkcs8_encrypted_pem(pem, password.as_bytes())
            .map(NodeKey::from_secret)
            .map_err(|e| KeyError::Decrypt {
                path: path.to_owned(),
                detail: e.to_string(),
            })
    }

    /// Loads the key at `path`.
    pub fn load(path: &Path, password: &str) -> Result<NodeKey, KeyError> {
        let pem = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        NodeKey::from_encrypted_pem(&pem, password, path)
    }

    /// Writes the key to `path`, readable by the owner only (0600), atomically (temp file, then rename).
    pub fn save(&self, path: &Path, password: &str) -> Result<(), KeyError> {
        let pem = self.to_encrypted_pem(password)?;
        let io_err = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("pem.tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io_err)?;
        file.write_all(pem.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)?;
        Ok(())
    }

    /// Loads the key at `path`, or makes and saves a new one if no file exists. An existing file that fails to
    /// load is an error: this never replaces an identity silently.
    pub fn load_or_generate(path: &Path, password: &str) -> Result<(NodeKey, bool), KeyError> {
        match fs::metadata(path) {
            Ok(_) => Ok((NodeKey::load(path, password)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = NodeKey::generate();
                key.save(path, password)?;
                Ok((key, true))
            }
            Err(source) => Err(KeyError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The RID of a node called `name` with this key.
    pub fn node_rid(&self, name: &str) -> Result<NodeRid, KeyError> {
        Ok(NodeRid::from_public_key(name, &self.public.to_base64())?)
    }

    /// Signs `message` (ECDSA P-256, SHA-256) and returns base64 of the raw 64-byte `r||s`.
    pub fn sign(&self, message: &[u8]) -> String {
        let signature: Signature = self.signing.sign(message);
        BASE64.encode(signature.to_bytes())
    }
}

/// A node's public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
}

impl PublicKey {
    /// Parses the `public_key` string of a node profile.
    pub fn from_base64(key: &str) -> Result<PublicKey, KeyError> {
        let bad = |detail: String| KeyError::BadPublicKey {
            key: key.chars().take(24).collect::<String>() + "…",
            detail,
        };
        let der = BASE64.decode(key.trim()).map_err(|e| bad(e.to_string()))?;
        let verifying = VerifyingKey::from_public_key_der(&der).map_err(|e| bad(e.to_string()))?;
        Ok(PublicKey { verifying })
    }

    /// Base64 of the DER SubjectPublicKeyInfo: the string koi-net puts in profiles and hashes into node RIDs.
    pub fn to_base64(&self) -> String {
        match self.verifying.to_public_key_der() {
            Ok(der) => BASE64.encode(der.as_bytes()),
            // Encoding a valid P-256 point cannot fail.
            Err(_) => String::new(),
        }
    }

    /// Checks a base64 raw `r||s` signature over `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<(), SignatureError> {
        let raw = BASE64
            .decode(signature_b64)
            .map_err(|_| SignatureError::NotBase64)?;
        if raw.len() != 64 {
            return Err(SignatureError::WrongLength(raw.len()));
        }
        let signature = Signature::from_slice(&raw).map_err(|_| SignatureError::Mismatch)?;
        self.verifying
            .verify(message, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("priv_key.pem");
        let key = NodeKey::generate();
        key.save(&path, "pw").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = NodeKey::load(&path, "pw").unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn wrong_password_or_corrupt_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("priv_key.pem");
        NodeKey::generate().save(&path, "right").unwrap();
        let err = NodeKey::load_or_generate(&path, "wrong").unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
        fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            NodeKey::load_or_generate(&path, "right"),
            Err(KeyError::Decrypt { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), "garbage");
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let key = NodeKey::generate();
        let sig = key.sign(b"hello");
        let public = PublicKey::from_base64(&key.public_key().to_base64()).unwrap();
        assert_eq!(public.verify(b"hello", &sig), Ok(()));
        assert_eq!(public.verify(b"hellO", &sig), Err(SignatureError::Mismatch));
        assert_eq!(
            public.verify(b"hello", "AAAA"),
            Err(SignatureError::WrongLength(3))
        );
        assert_eq!(
            public.verify(b"hello", "!!"),
            Err(SignatureError::NotBase64)
        );
    }

    #[test]
    fn node_rid_hash_is_sha256_of_the_public_key_string() {
        let key = NodeKey::generate();
        let rid = key.node_rid("gh").unwrap();
        assert!(rid.matches_public_key(&key.public_key().to_base64()));
        assert!(key
            .public_key()
            .to_base64()
            .starts_with("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"));
    }
}
