//! Every `#[etcd(...)]` attribute, parsed in one place.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, LitStr, Path};

use crate::case::Case;
use crate::ctxt::Ctxt;

// Container attribute names.
const PREFIX: &str = "prefix";
const RENAME_ALL: &str = "rename_all";
const VALIDATE: &str = "validate";
const DENY_UNKNOWN_KEYS: &str = "deny_unknown_keys";
// Field attribute names.
const DEFAULT: &str = "default";
const RENAME: &str = "rename";
const NESTED: &str = "nested";
const EACH: &str = "each";
const SECRET: &str = "secret";
const SKIP: &str = "skip";
const WITH: &str = "with";

const CONTAINER: &[&str] = &[PREFIX, RENAME_ALL, VALIDATE, DENY_UNKNOWN_KEYS];
const FIELD: &[&str] = &[DEFAULT, RENAME, NESTED, EACH, SECRET, SKIP, WITH];

/// The error for an attribute name that is not one of `valid`: the valid ones, and the one
/// meant where it is a near miss (`defualt` for `default`).
fn unknown(kind: &str, name: &str, valid: &[&str]) -> String {
    let near = valid
        .iter()
        .map(|v| (strsim::levenshtein(name, v), *v))
        .filter(|(d, v)| *d <= (name.len() / 3).max(1) || v.starts_with(name))
        .min_by_key(|(d, _)| *d);
    let hint = near.map_or(String::new(), |(_, v)| format!("; did you mean `{v}`?"));
    format!(
        "unknown etcd {kind} attribute `{name}`{hint} (valid: {})",
        valid.join(", ")
    )
}

/// A value given at most once; a second occurrence is reported where it appears.
pub(crate) struct Once<T> {
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Once<T> {
    fn new(name: &'static str) -> Self {
        Once { name, value: None }
    }

    fn set(&mut self, cx: &Ctxt, meta: &ParseNestedMeta<'_>, value: T) {
        if self.value.is_some() {
            cx.error_at(
                &meta.path,
                format!("duplicate etcd attribute `{}`", self.name),
            );
        } else {
            self.value = Some((meta.path.segments[0].ident.span(), value));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }

    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(s, _)| *s)
    }

    pub(crate) fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

pub(crate) struct Container {
    pub(crate) prefix: Once<LitStr>,
    pub(crate) rename_all: Once<Case>,
    /// The string as written (for spans) and the path it names.
    pub(crate) validate: Once<(LitStr, Path)>,
    pub(crate) deny_unknown_keys: Once<()>,
}

/// A field's default: `#[etcd(default)]` or `#[etcd(default = expr)]`.
pub(crate) enum Default {
    Trait,
    Expr(Box<Expr>),
}

pub(crate) struct Field {
    pub(crate) default: Once<Default>,
    pub(crate) rename: Once<LitStr>,
    pub(crate) nested: Once<()>,
    pub(crate) each: Once<()>,
    pub(crate) secret: Once<()>,
    pub(crate) skip: Once<()>,
    pub(crate) with: Once<Path>,
}

fn etcd_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("etcd"))
}

fn name_of(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote::ToTokens::to_token_stream(&meta.path).to_string())
}

impl Container {
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Container {
        let mut c = Container {
            prefix: Once::new(PREFIX),
            rename_all: Once::new(RENAME_ALL),
            validate: Once::new(VALIDATE),
            deny_unknown_keys: Once::new(DENY_UNKNOWN_KEYS),
        };
        for attr in etcd_attrs(attrs) {
            let parsed = attr.parse_nested_meta(|meta| {
                let name = name_of(&meta);
                match name.as_str() {
                    // #[etcd(prefix = "/services/gateway")]
                    PREFIX => {
                        let lit: LitStr = meta.value()?.parse()?;
                        c.prefix.set(cx, &meta, lit);
                    }
                    // #[etcd(rename_all = "kebab-case")]
                    RENAME_ALL => {
                        let lit: LitStr = meta.value()?.parse()?;
                        match Case::from_name(&lit.value()) {
                            Some(case) => c.rename_all.set(cx, &meta, case),
                            None => {
                                let names: Vec<_> = Case::NAMES.iter().map(|(n, _)| *n).collect();
                                cx.error_at(
                                    &lit,
                                    format!(
                                        "unknown rename_all case; expected one of {}",
                                        names.join(", ")
                                    ),
                                );
                            }
                        }
                    }
                    // #[etcd(validate = "path::to::check")]  fn check(&Self) -> Result<(), String>
                    VALIDATE => {
                        let lit: LitStr = meta.value()?.parse()?;
                        match lit.parse::<Path>() {
                            Ok(path) => c.validate.set(cx, &meta, (lit.clone(), path)),
                            Err(_) => cx.error_at(
                                &lit,
                                "validate must name a function, e.g. \"Self::check\"",
                            ),
                        }
                    }
                    // #[etcd(deny_unknown_keys)]
                    DENY_UNKNOWN_KEYS => c.deny_unknown_keys.set(cx, &meta, ()),
                    _ => {
                        cx.error_at(&meta.path, unknown("container", &name, CONTAINER));
                        skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(err) = parsed {
                cx.syn_error(err);
            }
        }
        c
    }
}

impl Field {
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Field {
        let mut f = Field {
            default: Once::new(DEFAULT),
            rename: Once::new(RENAME),
            nested: Once::new(NESTED),
            each: Once::new(EACH),
            secret: Once::new(SECRET),
            skip: Once::new(SKIP),
            with: Once::new(WITH),
        };
        for attr in etcd_attrs(attrs) {
            let parsed = attr.parse_nested_meta(|meta| {
                let name = name_of(&meta);
                match name.as_str() {
                    // #[etcd(default)]  or  #[etcd(default = expr)]
                    DEFAULT => {
                        let value = if meta.input.peek(syn::Token![=]) {
                            Default::Expr(Box::new(meta.value()?.parse()?))
                        } else {
                            Default::Trait
                        };
                        f.default.set(cx, &meta, value);
                    }
                    // #[etcd(rename = "key/path")]
                    RENAME => {
                        let lit: LitStr = meta.value()?.parse()?;
                        f.rename.set(cx, &meta, lit);
                    }
                    // #[etcd(nested)]
                    NESTED => f.nested.set(cx, &meta, ()),
                    // #[etcd(each)]
                    EACH => f.each.set(cx, &meta, ()),
                    // #[etcd(secret)]
                    SECRET => f.secret.set(cx, &meta, ()),
                    // #[etcd(skip)]
                    SKIP => f.skip.set(cx, &meta, ()),
                    // #[etcd(with = "module")]  module::encode(&T) / module::decode(&str)
                    WITH => {
                        let lit: LitStr = meta.value()?.parse()?;
                        match lit.parse::<Path>() {
                            Ok(path) => f.with.set(cx, &meta, path),
                            Err(_) => {
                                cx.error_at(&lit, "with must name a module, e.g. \"my_codec\"")
                            }
                        }
                    }
                    _ => {
                        cx.error_at(&meta.path, unknown("field", &name, FIELD));
                        skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(err) = parsed {
                cx.syn_error(err);
            }
        }
        f
    }
}

/// Consumes `= value` after an unknown attribute so parsing can go on to the next one.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()?;
    }
    Ok(())
}
