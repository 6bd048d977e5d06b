//! `edit`: the config in `$EDITOR`, as TOML of field paths, also when it does not load (the
//! incident fix starts there): what etcd holds is shown field by field with its problems as
//! comments. The file is the operator's work: a change that is refused leaves it in place,
//! and the command says where, so that it can be fixed and applied.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::display::{io, one_line};
use super::files::read_file;
use super::show::{read, stored_fields};
use crate::config::{field_of_key, EtcdConfig, Store};
use crate::error::{Error, Result};

/// What the operator saved, and the file it is in.
pub(super) struct Edited {
    pub(super) wanted: BTreeMap<String, String>,
    path: PathBuf,
}

impl Edited {
    /// Ends the session with the change's outcome: the file goes once the change is made,
    /// and stays, with a line saying where, when it is refused.
    pub(super) fn finish(
        self,
        outcome: Result<()>,
        out: &mut impl Write,
        json: bool,
    ) -> Result<()> {
        if outcome.is_ok() {
            let _ = std::fs::remove_file(&self.path);
        } else if !json {
            kept(out, &self.path)?;
        }
        outcome
    }
}

fn kept(out: &mut impl Write, path: &Path) -> Result<()> {
    let path = path.display();
    writeln!(
        out,
        "# your edit is kept in {path}: fix it and run `apply {path}`"
    )
    .map_err(io)
}

/// Opens `$EDITOR` on the config as etcd holds it and reads back what was saved.
pub(super) async fn session<T: EtcdConfig>(store: &Store, out: &mut impl Write) -> Result<Edited> {
    let text = file_text::<T>(store).await?;
    let path = std::env::temp_dir().join(format!("etcd-config-edit-{}.toml", std::process::id()));
    write_private(&path, &text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let editor = std::env::var("EDITOR").unwrap_or_else(|_| "vi".to_owned());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| Error::invalid(format!("cannot run {editor}: {e}")));
    match status {
        Ok(status) if status.success() => {}
        failed => {
            let _ = std::fs::remove_file(&path);
            let why = failed.map_or_else(|e| e.to_string(), |s| format!("{editor} failed ({s})"));
            return Err(Error::invalid(format!("{why}; nothing saved")));
        }
    }
    match read_file::<T>(&path) {
        Ok(wanted) => Ok(Edited { wanted, path }),
        Err(err) => {
            kept(out, &path)?;
            Err(err)
        }
    }
}

/// The file: every field etcd holds (all of them when the config loads, defaults included),
/// secret fields left out, and for a config that does not load, what is wrong with it.
async fn file_text<T: EtcdConfig>(store: &Store) -> Result<String> {
    let read = read::<T>(store).await?;
    let prefix = store.prefix_of::<T>();
    let schema = T::schema();
    let fields = match &read.loaded {
        Ok(value) => super::display::shown(value)?,
        // Keys no field reads cannot be set from the file: they are named below instead.
        Err(_) => stored_fields::<T>(&read.current)
            .into_iter()
            .filter(|f| field_of_key(&schema, &f.key).is_some())
            .collect(),
    };
    let mut text = format!(
        "# {prefix} at revision {} (secret fields are not shown and stay as they are)\n",
        read.current.revision
    );
    if let Err(err) = &read.loaded {
        text.push_str("# DOES NOT LOAD: fix it here\n");
        for problem in super::show::problems_of(err) {
            text.push_str(&format!("# ! {}\n", one_line(&problem)));
        }
    }
    for (key, _) in &read.unknown {
        text.push_str(&format!("# unknown key {prefix}{key}: no field reads it\n"));
    }
    for field in fields {
        if let Some(value) = &field.value {
            let line = format!("{} = {}\n", toml_key(&field.path), toml_string(value));
            text.push_str(&line);
        }
    }
    Ok(text)
}

/// Writes `text` to a new file only its owner may read (the values are not secret, but they
/// are the service's settings).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// A TOML key for a field path: bare where TOML allows, quoted otherwise.
fn toml_key(field: &str) -> String {
    let bare = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    field
        .split('.')
        .map(|part| {
            if bare(part) {
                part.to_owned()
            } else {
                toml_string(part)
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}
