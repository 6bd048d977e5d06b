//! The struct as the derive sees it: fields with their attributes, docs, keys and shapes, each
//! keeping its syn node for error spans.

use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, PathArguments, Type};

use crate::attr;
use crate::ctxt::Ctxt;

pub(crate) struct Input<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) attrs: attr::Container,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: attr::Field,
    pub(crate) doc: String,
    pub(crate) shape: Shape<'a>,
}

/// How a field is stored: decided once from its attributes and shape, and matched on by the
/// schema, encode and decode generators alike. (Conflicting attributes are reported by
/// `valid`; this takes them in the order below.)
pub(crate) enum Storage<'a> {
    /// `#[etcd(skip)]`: not stored; `Default::default()` on load.
    Skipped,
    /// `#[etcd(each, nested)]`: a map of structs, each under `key/<name>/`.
    EachNested { entry: &'a Type },
    /// `#[etcd(nested)]`: a struct under `key/`.
    Nested,
    /// `#[etcd(each)]`: a map, one key per entry.
    Each { entry: &'a Type },
    /// `Option<T>`: absent key = `None`.
    Optional,
    /// `#[etcd(default)]` or `#[etcd(default = expr)]`: absent key = the default.
    Defaulted(&'a attr::Default),
    /// Anything else: a missing key is an error.
    Required,
}

/// What a field's type looks like, as far as syntax tells.
pub(crate) enum Shape<'a> {
    /// `Option<T>`: optional, stored as `T`.
    Option(&'a Type),
    /// `BTreeMap<String, V>` or `HashMap<String, V>`.
    Map(&'a Type),
    /// Anything else.
    Plain,
}

impl<'a> Input<'a> {
    /// Reads a derive input; `None` (with an error recorded) for anything but a struct with
    /// named fields.
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Input<'a>> {
        let attrs = attr::Container::parse(cx, &input.attrs);
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                _ => {
                    cx.error_at(
                        &input.ident,
                        "EtcdConfig needs a struct with named fields: each name becomes a key",
                    );
                    return None;
                }
            },
            Data::Enum(_) | Data::Union(_) => {
                cx.error_at(
                    &input.ident,
                    "EtcdConfig can only be derived for structs with named fields",
                );
                return None;
            }
        };
        let fields = named
            .named
            .iter()
            .map(|field| Field {
                ident: field.ident.as_ref().expect("named field"),
                ty: &field.ty,
                attrs: attr::Field::parse(cx, &field.attrs),
                doc: doc_comment(&field.attrs),
                shape: shape(&field.ty),
            })
            .collect();
        Some(Input {
            original: input,
            attrs,
            fields,
        })
    }
}

impl Field<'_> {
    /// The key of this field, relative to the struct's prefix.
    pub(crate) fn key(&self, input: &Input<'_>) -> String {
        if let Some(rename) = self.attrs.rename.get() {
            return rename.value();
        }
        let name = self.ident.to_string();
        let name = name.strip_prefix("r#").unwrap_or(&name);
        match input.attrs.rename_all.get() {
            Some(case) => case.apply(name),
            None => name.to_owned(),
        }
    }

    /// The field's name in paths like `tls.cert_path`.
    pub(crate) fn name(&self) -> String {
        let name = self.ident.to_string();
        name.strip_prefix("r#").unwrap_or(&name).to_owned()
    }

    /// How the field is stored.
    pub(crate) fn storage(&self) -> Storage<'_> {
        let a = &self.attrs;
        if a.skip.is_set() {
            Storage::Skipped
        } else if a.each.is_set() && a.nested.is_set() {
            Storage::EachNested {
                entry: self.value_type(),
            }
        } else if a.nested.is_set() {
            Storage::Nested
        } else if a.each.is_set() {
            Storage::Each {
                entry: self.value_type(),
            }
        } else if let Shape::Option(_) = self.shape {
            Storage::Optional
        } else if let Some(default) = a.default.get() {
            Storage::Defaulted(default)
        } else {
            Storage::Required
        }
    }

    /// The type whose values the codec handles: `T` of `Option<T>`, `V` of an `each` map, else
    /// the type itself (a map without `each` is one value, stored as JSON).
    pub(crate) fn value_type(&self) -> &Type {
        match self.shape {
            Shape::Option(inner) => inner,
            Shape::Map(inner) if self.attrs.each.is_set() => inner,
            Shape::Map(_) | Shape::Plain => self.ty,
        }
    }
}

fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The last path segment of a type and its generic arguments, e.g. `Option` and `[T]`.
fn last_segment(ty: &Type) -> Option<(&Ident, Vec<&Type>)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let args = match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((&segment.ident, args))
}

fn shape(ty: &Type) -> Shape<'_> {
    match last_segment(ty) {
        Some((ident, args)) if ident == "Option" && args.len() == 1 => Shape::Option(args[0]),
        Some((ident, args)) if (ident == "BTreeMap" || ident == "HashMap") && args.len() == 2 => {
            Shape::Map(args[1])
        }
        _ => Shape::Plain,
    }
}

/// True for the crate's `Secret<T>`, bare, in an `Option` or as a map's values: such a field
/// is secret without `#[etcd(secret)]`.
pub(crate) fn holds_secret(ty: &Type) -> bool {
    let inner = match shape(ty) {
        Shape::Option(inner) | Shape::Map(inner) => inner,
        Shape::Plain => ty,
    };
    matches!(last_segment(inner), Some((ident, args)) if ident == "Secret" && args.len() == 1)
}

/// True for `Duration` (std's, or a re-export of it): stored in Go's duration format.
pub(crate) fn is_duration(ty: &Type) -> bool {
    matches!(last_segment(ty), Some((ident, args)) if ident == "Duration" && args.is_empty())
}

/// True if the map's key type is `String`.
pub(crate) fn map_key_is_string(ty: &Type) -> bool {
    match last_segment(ty) {
        Some((_, args)) if args.len() == 2 => {
            matches!(last_segment(args[0]), Some((ident, a)) if ident == "String" && a.is_empty())
        }
        _ => false,
    }
}
