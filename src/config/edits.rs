//! [`FieldEdits`]: field changes by path, the argument of [`Store::change_fields`] and
//! [`Store::plan_edit`].
//!
//! [`Store::change_fields`]: crate::Store::change_fields
//! [`Store::plan_edit`]: crate::Store::plan_edit

use std::fmt;

use zeroize::Zeroizing;

/// Field changes by path, made as one change: each sets a field's stored text (as `etcdctl`
/// would put it: JSON for anything but plain strings and numbers) or removes its key.
///
/// ```
/// use etcd_config::FieldEdits;
/// let edits = FieldEdits::new().set("pool", "64").unset("labels.canary");
/// assert_eq!(edits.len(), 2);
/// ```
///
/// A value is held in memory that is cleared when the edits drop (it may be a secret), and
/// `Debug` prints paths only.
#[derive(Clone, Default)]
#[must_use]
pub struct FieldEdits {
    edits: Vec<(String, Option<Zeroizing<String>>)>,
}

impl FieldEdits {
    /// No changes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the field at `path` to `text`.
    pub fn set(mut self, path: impl Into<String>, text: impl Into<String>) -> Self {
        self.push(path.into(), Some(text.into()));
        self
    }

    /// Removes the field at `path`: an optional field becomes `None`, a map entry goes, a
    /// field with a default falls back to it.
    pub fn unset(mut self, path: impl Into<String>) -> Self {
        self.push(path.into(), None);
        self
    }

    /// Adds one change: `Some(text)` sets the field, `None` removes it.
    pub fn push(&mut self, path: String, text: Option<String>) {
        self.edits.push((path, text.map(Zeroizing::new)));
    }

    /// How many changes.
    pub fn len(&self) -> usize {
        self.edits.len()
    }

    /// Whether there is no change.
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Each change in order: the path, and the text it sets (`None`: removed).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.edits
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_ref().map(|t| t.as_str())))
    }
}

impl<P: Into<String>, V: Into<String>> FromIterator<(P, Option<V>)> for FieldEdits {
    fn from_iter<I: IntoIterator<Item = (P, Option<V>)>>(iter: I) -> Self {
        let mut edits = FieldEdits::new();
        for (path, text) in iter {
            edits.push(path.into(), text.map(Into::into));
        }
        edits
    }
}

impl fmt::Debug for FieldEdits {
    /// Paths and whether each is set or removed; never a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(path, text)| match text {
                Some(_) => format!("set {path}"),
                None => format!("unset {path}"),
            }))
            .finish()
    }
}
