//! Secret fields encrypted at rest: the [`Keyring`] and the stored form.
//!
//! With a key ring on the [`Store`](super::Store), a secret field is saved as
//!
//! ```text
//! enc:v1:<key id>:<base64 of nonce, ciphertext and tag>
//! ```
//!
//! AES-256-GCM with a random 96-bit nonce, the field's full key (namespace, prefix and field
//! key) as associated data: a ciphertext copied to another key, another config or another
//! namespace does not decrypt. Loads, watches and live configs decrypt by the key id; a value
//! whose key id the ring does not hold, or that does not decrypt, is a decode problem naming
//! the key and the key id, never the value.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// What every encrypted value starts with: the form's name and version.
const MARK: &str = "enc:v1:";

/// Keys to encrypt secret fields with: key id → 256-bit key. The last key added writes; every
/// key reads. Key material is zeroed when the ring is dropped and never printed (`Debug`
/// shows the ids).
///
/// A key file (or environment variable) holds one key per line, `<id> <key>`, the key as 64
/// hex digits or 44 characters of base64; blank lines and `#` comments are skipped. To
/// rotate: add a line with a new id at the end (it writes from then on), roll the file out,
/// run [`Store::rotate_secrets`](super::Store::rotate_secrets), then remove the old line once
/// nothing needs it.
///
/// ```text
/// # generated with: openssl rand -hex 32
/// 2026-06 3f1c…(64 hex digits)
/// ```
pub struct Keyring {
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
    /// The index of the key that writes.
    writer: usize,
    accept_plain: bool,
}

impl Keyring {
    /// A key ring with one key, which writes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an id that is empty, longer than 64 bytes, or holds
    /// anything but ASCII letters, digits, `-`, `_` and `.`.
    pub fn new(id: &str, key: [u8; 32]) -> Result<Keyring> {
        Keyring {
            keys: Vec::new(),
            writer: 0,
            accept_plain: false,
        }
        .with_key(id, key)
    }

    /// Adds a key, which writes from now on (the others still read).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new), and for an id the ring already holds.
    pub fn with_key(mut self, id: &str, key: [u8; 32]) -> Result<Keyring> {
        check_id(id)?;
        if self.keys.iter().any(|(k, _)| k == id) {
            return Err(Error::invalid(format!(
                "key id `{id}` is in the key ring twice"
            )));
        }
        self.keys.push((id.to_owned(), Zeroizing::new(key)));
        self.writer = self.keys.len() - 1;
        Ok(self)
    }

    /// Reads a key file (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the file and line (never the key) for a file that
    /// cannot be read, holds no key, or a line that is not `<id> <key>`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Keyring> {
        let path = path.as_ref();
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::invalid(format!("key file {}: {e}", path.display())))?,
        );
        Keyring::parse(&text, &format!("key file {}", path.display()))
    }

    /// Reads keys from the environment variable `name`, in the key file's format (lines, or
    /// `;` between keys).
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file), naming the variable.
    pub fn from_env(name: &str) -> Result<Keyring> {
        let text = Zeroizing::new(
            std::env::var(name)
                .map_err(|e| Error::invalid(format!("environment variable {name}: {e}")))?,
        );
        Keyring::parse(
            &text.replace(';', "\n"),
            &format!("environment variable {name}"),
        )
    }

    fn parse(text: &str, source: &str) -> Result<Keyring> {
        let mut ring: Option<Keyring> = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| Error::invalid(format!("{source}, line {}: {why}", number + 1));
            let mut parts = line.split_whitespace();
            let (Some(id), Some(material), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected `<id> <key>`"));
            };
            let key = parse_key(material).ok_or_else(|| {
                bad("the key is not 64 hex digits or 44 characters of base64 (256 bits)")
            })?;
            ring = Some(
                match ring {
                    None => Keyring::new(id, *key),
                    Some(ring) => ring.with_key(id, *key),
                }
                .map_err(|e| bad(&e.to_string()))?,
            );
        }
        ring.ok_or_else(|| Error::invalid(format!("{source} holds no key")))
    }

    /// Writes with key `id` instead of the last one added.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the ring does not hold `id`.
    pub fn write_with(mut self, id: &str) -> Result<Keyring> {
        self.writer = self
            .keys
            .iter()
            .position(|(k, _)| k == id)
            .ok_or_else(|| Error::invalid(format!("the key ring holds no key `{id}`")))?;
        Ok(self)
    }

    /// Also accept secret fields stored in clear (to migrate a config that was saved without
    /// a key ring: the next save encrypts them). Off by default: a plain value where an
    /// encrypted one is expected is a decode problem.
    #[must_use]
    pub fn accept_plain(mut self) -> Keyring {
        self.accept_plain = true;
        self
    }

    /// The ids of the keys, in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// The id of the key that writes.
    pub fn writing_id(&self) -> &str {
        &self.keys[self.writer].0
    }

    /// `plain` encrypted for the etcd key `key`, in the stored form.
    pub(crate) fn seal(&self, key: &str, plain: &str) -> Result<String> {
        let (id, material) = &self.keys[self.writer];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::invalid("no randomness for a nonce"))?;
        let mut sealed = Zeroizing::new(plain.as_bytes().to_vec());
        cipher(material)
            .and_then(|cipher| {
                cipher.seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(key.as_bytes()),
                    &mut *sealed,
                )
            })
            .map_err(|_| Error::invalid(format!("{key}: cannot encrypt")))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{MARK}{id}:{}", STANDARD_NO_PAD.encode(bytes)))
    }

    /// The plain text of a value stored at `key`, or why it cannot be read.
    pub(crate) fn open(&self, key: &str, stored: &str) -> std::result::Result<Opened, Unreadable> {
        let Some((id, data)) = split(stored) else {
            return if self.accept_plain {
                Ok(Opened::Plain)
            } else {
                Err(Unreadable::Plain)
            };
        };
        let Some((_, material)) = self.keys.iter().find(|(k, _)| k == id) else {
            return Err(Unreadable::UnknownKey(id.to_owned()));
        };
        let fail = || Unreadable::Undecryptable(id.to_owned());
        let mut bytes = Zeroizing::new(STANDARD_NO_PAD.decode(data).map_err(|_| fail())?);
        if bytes.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let plain = cipher(material)
            .and_then(|cipher| cipher.open_in_place(nonce, Aad::from(key.as_bytes()), sealed))
            .map_err(|_| fail())?;
        let text = std::str::from_utf8(plain).map_err(|_| fail())?;
        Ok(Opened::Decrypted(Zeroizing::new(text.to_owned())))
    }
}

/// A stored secret that could be read.
pub(crate) enum Opened {
    /// Stored in clear (accepted while migrating): use it as it is.
    Plain,
    Decrypted(Zeroizing<String>),
}

/// Why a stored secret could not be read: never its value.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// Encrypted, and this store has no key ring.
    NoKeyring(String),
    /// Encrypted with a key id the ring does not hold.
    UnknownKey(String),
    /// Does not decrypt with its key: altered, truncated, or moved from another key.
    Undecryptable(String),
    /// Stored in clear, and the ring does not accept that.
    Plain,
}

impl Unreadable {
    /// The key id it names, if any.
    pub(crate) fn key_id(&self) -> Option<&str> {
        match self {
            Unreadable::NoKeyring(id)
            | Unreadable::UnknownKey(id)
            | Unreadable::Undecryptable(id) => Some(id),
            Unreadable::Plain => None,
        }
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::NoKeyring(id) => {
                write!(
                    f,
                    "encrypted with key `{id}`, and this store has no key ring"
                )
            }
            Unreadable::UnknownKey(id) => {
                write!(
                    f,
                    "encrypted with key `{id}`, which the key ring does not hold"
                )
            }
            Unreadable::Undecryptable(id) => write!(
                f,
                "does not decrypt with key `{id}` (altered, or copied from another key)"
            ),
            Unreadable::Plain => write!(
                f,
                "stored in clear, and the key ring expects it encrypted (Keyring::accept_plain \
                 to migrate)"
            ),
        }
    }
}

/// The key id and data of a value in the stored form; `None` for anything else.
pub(crate) fn split(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(MARK)?.split_once(':')
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("writing", &self.writing_id())
            .field("accept_plain", &self.accept_plain)
            .finish()
    }
}

fn cipher(material: &[u8; 32]) -> std::result::Result<LessSafeKey, ring::error::Unspecified> {
    UnboundKey::new(&AES_256_GCM, material).map(LessSafeKey::new)
}

fn check_id(id: &str) -> Result<()> {
    let fits = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fits {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "key id `{id}`: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`"
        )))
    }
}

/// 256 bits from 64 hex digits or base64.
fn parse_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let mut key = Zeroizing::new([0u8; 32]);
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        return Some(key);
    }
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .ok()?,
    );
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}
