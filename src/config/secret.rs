//! [`Secret`]: a field type whose value does not print.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// A value that `Debug` and `Display` never print (they show `***`), reached only through
/// [`expose`](Self::expose); its memory is zeroed when dropped. As a field type it makes the
/// field secret (`#[etcd(secret)]` is implied): kept out of errors, logs, schemas and diffs,
/// and encrypted at rest when the store has a [`Keyring`](crate::Keyring).
///
/// ```
/// use etcd_config::{EtcdConfig, Secret};
///
/// #[derive(EtcdConfig, Debug, Clone, PartialEq)]
/// #[etcd(prefix = "/services/gateway")]
/// struct Gateway {
///     api_token: Secret<String>,
/// }
///
/// let gw = Gateway { api_token: Secret::new("hunter2".to_owned()) };
/// assert_eq!(format!("{gw:?}"), "Gateway { api_token: *** }");
/// assert_eq!(gw.api_token.expose(), "hunter2");
/// ```
///
/// It serializes as its value (that is how it is stored): `serde_json::to_string` of a struct
/// holding one shows it. Copies the program makes (`expose().clone()`, a serialized form) are
/// its own to wipe.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, to change it in place.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T: Zeroize> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T: Zeroize + Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Zeroize + Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}
