//! What decoding a config found wrong, key by key: the items of [`Error::Decode`](super::Error::Decode).

use std::fmt;

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required key is absent.
    Missing,
    /// The value does not parse as the field's type.
    Invalid {
        /// The field's type, e.g. `u16`.
        expected: String,
        /// Why it does not parse.
        reason: String,
        /// The value as found, or `None` for a secret field.
        value: Option<String>,
    },
    /// A key no field reads, under a struct with `#[etcd(deny_unknown_keys)]`.
    Unknown,
    /// A key under the prefix that is not UTF-8 text: no field or map entry can own it, and
    /// it is never merged with another key. [`Problem::key`] shows its bytes escaped
    /// (`/app/routes/\xff`).
    KeyNotUtf8,
    /// A `#[etcd(nested)]` struct's own `validate` refused its value; [`Problem::field`] is
    /// the nested field's path.
    Rejected {
        /// What `validate` said.
        reason: String,
    },
    /// A secret field's value cannot be read: encrypted with a key the store's
    /// [`Keyring`](crate::Keyring) does not hold (or the store has none), altered or copied
    /// from another key, or stored in clear where the key ring expects it encrypted.
    Secret {
        /// The key id the stored value names, if it is encrypted.
        key_id: Option<String>,
        /// Why it cannot be read (never the value).
        reason: String,
    },
}

/// One problem found while decoding, naming the key and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The full etcd key.
    pub key: String,
    /// The Rust field path (`tls.cert_path`); empty for an unknown key.
    pub field: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProblemKind::Missing => write!(
                f,
                "{}: missing (field `{}` is required)",
                self.key, self.field
            ),
            ProblemKind::Invalid {
                expected,
                reason,
                value,
            } => {
                write!(
                    f,
                    "{}: expected {expected} for field `{}`",
                    self.key, self.field
                )?;
                match value {
                    Some(value) => write!(f, ", found {value:?}: {reason}"),
                    None => write!(f, " (secret value not shown): {reason}"),
                }
            }
            ProblemKind::Unknown => write!(f, "{}: unknown key (deny_unknown_keys)", self.key),
            ProblemKind::KeyNotUtf8 => write!(
                f,
                "{}: the key is not UTF-8 text, so no field can own it",
                self.key
            ),
            ProblemKind::Rejected { reason } => {
                write!(f, "{}: field `{}` rejected: {reason}", self.key, self.field)
            }
            ProblemKind::Secret { reason, .. } => {
                write!(f, "{}: secret field `{}` {reason}", self.key, self.field)
            }
        }
    }
}
