//! Checks that involve more than one attribute or field. Each error points at the token that
//! is wrong (for a conflict, the second attribute; for a duplicate key, the second field).

use crate::ast::{Field, Input, Shape};
use crate::ctxt::Ctxt;

pub(crate) fn validate(cx: &Ctxt, input: &Input<'_>) {
    check_container(cx, input);
    for field in &input.fields {
        check_field(cx, field);
    }
    check_keys(cx, input);
}

fn check_container(cx: &Ctxt, input: &Input<'_>) {
    let original = input.original;
    if !original.generics.params.is_empty() {
        cx.error_at(
            &original.generics,
            "EtcdConfig does not support generic structs",
        );
    }
    // Without a prefix the struct can only be nested (`#[etcd(nested)]`): loading it on its
    // own does not compile (see `local_prefix_of`).
    match input.attrs.prefix.get() {
        None => {}
        Some(lit) => {
            let prefix = lit.value();
            if !prefix.starts_with('/') {
                cx.error_at(
                    lit,
                    "prefix must start with `/`, e.g. \"/services/gateway\"",
                );
            } else if prefix.ends_with('/') {
                cx.error_at(
                    lit,
                    "prefix must not end with `/`: the struct owns the keys under prefix + \"/\"",
                );
            } else if prefix.contains("//") {
                cx.error_at(lit, "prefix must not contain an empty segment (`//`)");
            }
        }
    }
}

fn check_field(cx: &Ctxt, field: &Field<'_>) {
    let a = &field.attrs;
    let conflict = |first: &str, second: &str, span: Option<proc_macro2::Span>| {
        let span = span.unwrap_or_else(|| field.ident.span());
        cx.syn_error(syn::Error::new(
            span,
            format!("`{first}` and `{second}` cannot be used together"),
        ));
    };
    if a.skip.is_set() {
        for (name, span) in [
            ("default", a.default.span()),
            ("rename", a.rename.span()),
            ("nested", a.nested.span()),
            ("each", a.each.span()),
            ("secret", a.secret.span()),
            ("with", a.with.span()),
        ] {
            if span.is_some() {
                conflict("skip", name, span);
            }
        }
        return;
    }
    if a.nested.is_set() && a.with.is_set() {
        conflict("nested", "with", a.with.span());
    }
    if a.nested.is_set() && a.default.is_set() && !a.each.is_set() {
        conflict("nested", "default", a.default.span());
    }
    if a.nested.is_set() && a.secret.is_set() {
        cx.syn_error(syn::Error::new(
            a.secret.span().unwrap(),
            "`secret` marks a value; mark the secret fields inside the nested struct instead",
        ));
    }
    check_shape(cx, field);
    check_default_literal(cx, field);
    if let Some(rename) = a.rename.get() {
        let key = rename.value();
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') || key.contains("//") {
            cx.error_at(rename, "rename must be a non-empty relative key such as \"log\" or \"limits/max\" (no leading, trailing or double `/`)");
        }
    }
}

/// What the field's type allows: `default` and `nested` not on an `Option`, `each` only on a
/// map with `String` keys.
fn check_shape(cx: &Ctxt, field: &Field<'_>) {
    let a = &field.attrs;
    match field.shape {
        Shape::Option(_) => {
            if let Some(span) = a.default.span() {
                cx.syn_error(syn::Error::new(
                    span,
                    "an Option field is already optional (absent = None); remove `default`",
                ));
            }
            if let Some(span) = a.nested.span().filter(|_| !a.each.is_set()) {
                cx.syn_error(syn::Error::new(
                    span,
                    "`nested` does not support Option; use the nested struct's own defaults",
                ));
            }
            if let Some(span) = a.each.span() {
                cx.syn_error(syn::Error::new(
                    span,
                    "`each` needs a BTreeMap<String, V> or HashMap<String, V> field",
                ));
            }
        }
        Shape::Map(_) if a.each.is_set() => {
            if !crate::ast::map_key_is_string(field.ty) {
                cx.error_at(
                    field.ty,
                    "`each` maps must have String keys: each key is a part of an etcd key",
                );
            }
            if let Some(span) = a.default.span() {
                cx.syn_error(syn::Error::new(
                    span,
                    "an `each` map is empty when it has no keys; remove `default`",
                ));
            }
        }
        _ => {
            if let Some(span) = a.each.span() {
                cx.syn_error(syn::Error::new(
                    span,
                    "`each` needs a BTreeMap<String, V> or HashMap<String, V> field",
                ));
            }
        }
    }
}

/// A string default on a number or a `bool` (`#[etcd(default = "eight")] workers: u32`): the
/// default is a Rust expression of the field's type, not text. (A string literal converts with
/// `From<&str>` for the types that have it: `String`, `PathBuf`, ...)
fn check_default_literal(cx: &Ctxt, field: &Field<'_>) {
    let Some(crate::attr::Default::Expr(expr)) = field.attrs.default.get() else {
        return;
    };
    let syn::Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(text),
        ..
    }) = &**expr
    else {
        return;
    };
    let ty = quote::ToTokens::to_token_stream(field.ty).to_string();
    const PLAIN: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "bool",
    ];
    if PLAIN.contains(&ty.as_str()) {
        let example = if ty == "bool" { "true" } else { "8" };
        cx.error_at(
            text,
            format!(
                "the default of `{}` must be a `{ty}` expression, such as `default = {example}`, \
                 not a string",
                field.name()
            ),
        );
    }
}

/// Two fields may not map to the same key, and no key may sit inside another field's subtree
/// (`nested` and `each` own every key under `key/`).
fn check_keys(cx: &Ctxt, input: &Input<'_>) {
    let mut seen: Vec<(String, bool, String)> = Vec::new();
    for field in input.fields.iter().filter(|f| !f.attrs.skip.is_set()) {
        let key = field.key(input);
        let subtree = field.attrs.nested.is_set() || field.attrs.each.is_set();
        for (other, other_subtree, other_name) in &seen {
            let clash = key == *other
                || (*other_subtree && key.starts_with(&format!("{other}/")))
                || (subtree && other.starts_with(&format!("{key}/")));
            if clash {
                cx.error_at(
                    field.ident,
                    format!("field `{}` maps to key `{key}`, which collides with field `{other_name}` (key `{other}`)", field.name()),
                );
            }
        }
        seen.push((key, subtree, field.name()));
    }
}
