//! Writes the `EtcdConfig` impl. Everything is named by absolute path through
//! `::etcd_config::__private`, so the user's own `Result`, `Option` or `String` cannot interfere.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::spanned::Spanned;

use crate::ast::{self, Field, Input, Storage};
use crate::attr;
use crate::ctxt::Ctxt;

pub(crate) fn derive(input: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::default();
    let parsed = ast::Input::from_syn(&cx, input);
    if let Some(parsed) = &parsed {
        crate::valid::validate(&cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => impl_struct(&parsed),
        (Err(errors), _) => crate::fallback::stub(input, errors),
        (Ok(()), None) => unreachable!("no struct was read, yet no error was recorded"),
    }
}

/// What the three generators need to know about one field, worked out once.
struct Plan<'a> {
    field: &'a Field<'a>,
    /// The key relative to the struct's prefix.
    key: String,
    /// The Rust field name, as paths like `tls.cert_path` show it.
    name: String,
    secret: bool,
    storage: Storage<'a>,
}

impl<'a> Plan<'a> {
    fn of(input: &Input<'_>, field: &'a Field<'a>) -> Plan<'a> {
        Plan {
            field,
            key: field.key(input),
            name: field.name(),
            secret: field.attrs.secret.is_set() || crate::ast::holds_secret(field.ty),
            storage: field.storage(),
        }
    }
}

fn impl_struct(input: &Input<'_>) -> TokenStream {
    let ident = &input.original.ident;
    // None for a struct that is only ever nested: its keys are under its parent's.
    let prefix = input
        .attrs
        .prefix
        .get()
        .map(syn::LitStr::value)
        .unwrap_or_default();
    let deny_unknown = input.attrs.deny_unknown_keys.is_set();
    let plans: Vec<Plan<'_>> = input.fields.iter().map(|f| Plan::of(input, f)).collect();

    let describe = plans.iter().filter_map(describe_field);
    let encode = plans.iter().filter_map(encode_field);
    let locals: Vec<syn::Ident> = plans
        .iter()
        .map(|p| quote::format_ident!("__field_{}", p.name))
        .collect();
    let decode = plans.iter().zip(&locals).map(|(plan, local)| {
        let value = decode_field(plan);
        quote! { let #local = #value; }
    });
    let assign = plans.iter().zip(&locals).map(|(plan, local)| {
        let name = plan.field.ident;
        match plan.storage {
            Storage::Skipped => quote! { #name: #local },
            _ => quote! { #name: #local? },
        }
    });
    let validate = validate_fn(input);
    let config = config_impl(input, &prefix);

    let nests = plans.iter().filter_map(nest_const);
    let codecs = plans.iter().filter_map(codec_const);

    quote! {
        #[allow(non_upper_case_globals, unused_attributes, unused_qualifications)]
        const _: () = {
            #(#nests)*
            #(#codecs)*

            #config

            #[automatically_derived]
            impl ::etcd_config::__private::EtcdFields for #ident {
                #validate

                fn __describe(__out: &mut ::etcd_config::__private::Describe<'_>) {
                    #(#describe)*
                }

                fn __encode(&self, __out: &mut ::etcd_config::__private::Encoder<'_>) {
                    #(#encode)*
                }

                fn __decode(
                    __input: &mut ::etcd_config::__private::Decoder<'_>,
                ) -> ::core::option::Option<Self> {
                    #(#decode)*
                    if !__input.finish(#deny_unknown) {
                        return ::core::option::Option::None;
                    }
                    ::core::option::Option::Some(Self { #(#assign,)* })
                }
            }
        };
    }
}

/// `__validate`, calling the struct's `validate` function, if it has one.
fn validate_fn(input: &Input<'_>) -> Option<TokenStream> {
    input.attrs.validate.get().map(|(lit, path)| {
        // Spanned at the attribute's string: a function of the wrong shape is one error there.
        let check = quote::quote_spanned!(lit.span()=> #path);
        quote! {
            fn __validate(&self) -> ::core::result::Result<(), ::etcd_config::__private::String> {
                ::etcd_config::__private::validate_with(self, #check)
            }
        }
    })
}

/// The `EtcdConfig` impl: only a struct with a prefix is a config on its own; without one it
/// can be nested.
fn config_impl(input: &Input<'_>, prefix: &str) -> Option<TokenStream> {
    let ident = &input.original.ident;
    (!prefix.is_empty()).then(|| {
        quote! {
            #[automatically_derived]
            impl ::etcd_config::__private::EtcdConfig for #ident {
                const PREFIX: &'static str = #prefix;
            }
        }
    })
}

/// `(encode, decode)` closures for the field's values.
fn codec(field: &Field<'_>) -> (TokenStream, TokenStream) {
    let ty = field.value_type();
    if let Some(module) = field.attrs.with.get() {
        (
            quote!(|__v: &#ty| #module::encode(__v)),
            quote!(|__s: &str| -> ::core::result::Result<#ty, ::etcd_config::__private::String> { #module::decode(__s) }),
        )
    } else if ast::is_duration(ty) {
        (
            quote!(::etcd_config::__private::duration::encode),
            quote!(::etcd_config::__private::duration::decode),
        )
    } else {
        let codec = codec_ident(field);
        (
            quote!(|__v: &#ty| (#codec.encode)(__v)),
            quote!(|__s: &str| (#codec.decode)(__s)),
        )
    }
}

/// Whether the field's values go through the default (serde) codec.
fn serde_codec(plan: &Plan<'_>) -> bool {
    let field = plan.field;
    let stored = !matches!(
        plan.storage,
        Storage::Skipped | Storage::Nested | Storage::EachNested { .. }
    );
    stored && field.attrs.with.get().is_none() && !ast::is_duration(field.value_type())
}

/// The const holding a field type's default codec ([`codec_const`]).
fn codec_ident(field: &Field<'_>) -> syn::Ident {
    quote::format_ident!("__CODEC_{}", field.name())
}

/// For a field stored with the default codec, the one place that requires its type to be
/// serde's: a type that is not is one error, under the type as the user wrote it.
fn codec_const(plan: &Plan<'_>) -> Option<TokenStream> {
    if !serde_codec(plan) {
        return None;
    }
    let ty = plan.field.value_type();
    let codec = codec_ident(plan.field);
    Some(quote::quote_spanned! {ty.span()=>
        const #codec: ::etcd_config::__private::Codec<#ty> =
            ::etcd_config::__private::codec_of::<#ty>();
    })
}

/// The type as a person writes it: `Vec<String>`, `BTreeMap<String, Route>`.
fn type_name(ty: &syn::Type) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(' ', "")
        .replace(',', ", ")
}

fn default_expr(default: &attr::Default) -> TokenStream {
    match default {
        attr::Default::Trait => quote!(::core::default::Default::default()),
        attr::Default::Expr(expr) => match &**expr {
            // A string literal becomes whatever the field holds: String, PathBuf, ...
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(_),
                ..
            }) => quote!(::core::convert::From::from(#expr)),
            _ => expr.to_token_stream(),
        },
    }
}

fn describe_field(plan: &Plan<'_>) -> Option<TokenStream> {
    let Plan {
        field, key, name, ..
    } = plan;
    let ty = field.ty;
    let info = || {
        let type_text = type_name(field.value_type());
        let doc = &field.doc;
        let secret = plan.secret;
        let required = matches!(plan.storage, Storage::Required);
        quote! {
            ::etcd_config::__private::FieldInfo {
                key: #key, field: #name, type_name: #type_text, doc: #doc,
                required: #required, secret: #secret,
            }
        }
    };
    Some(match &plan.storage {
        Storage::Skipped => return None,
        Storage::EachNested { .. } | Storage::Nested => {
            let nest = nest_ident(plan);
            let describe = if matches!(plan.storage, Storage::Nested) {
                quote!(nested)
            } else {
                quote!(each_nested)
            };
            quote!(__out.#describe(#key, #name, &#nest);)
        }
        Storage::Each { .. } => {
            let info = info();
            let sample = if serde_codec(plan) {
                let codec = codec_ident(field);
                quote!(::core::option::Option::Some(#codec.sample))
            } else {
                quote!(::core::option::Option::None)
            };
            quote!(__out.each(#info, #sample);)
        }
        Storage::Optional | Storage::Required => {
            let info = info();
            quote!(__out.value(#info, ::core::option::Option::None);)
        }
        Storage::Defaulted(default) => {
            let info = info();
            let (encode, _) = codec(field);
            let expr = default_expr(default);
            quote! {
                __out.value(#info, ::core::option::Option::Some({
                    let __default: #ty = #expr;
                    (#encode)(&__default)
                }));
            }
        }
    })
}

/// The const holding a nested field type's methods ([`nest_const`]).
fn nest_ident(plan: &Plan<'_>) -> syn::Ident {
    quote::format_ident!("__NEST_{}", plan.name)
}

/// For a nested field, the one place that requires its type to derive `EtcdConfig`: a type
/// that does not is one error, under the type as the user wrote it.
fn nest_const(plan: &Plan<'_>) -> Option<TokenStream> {
    let ty = match plan.storage {
        Storage::Nested => plan.field.ty,
        Storage::EachNested { entry } => entry,
        _ => return None,
    };
    let nest = nest_ident(plan);
    Some(quote::quote_spanned! {ty.span()=>
        const #nest: ::etcd_config::__private::Nest<#ty> =
            ::etcd_config::__private::nest_of::<#ty>();
    })
}

fn encode_field(plan: &Plan<'_>) -> Option<TokenStream> {
    let Plan {
        field,
        key,
        name,
        secret,
        ..
    } = plan;
    let member = field.ident;
    let (encode, _) = codec(field);
    Some(match plan.storage {
        Storage::Skipped => return None,
        Storage::EachNested { .. } => {
            let nest = nest_ident(plan);
            quote!(__out.each_nested(#key, #name, &self.#member, &#nest);)
        }
        Storage::Nested => {
            let nest = nest_ident(plan);
            quote!(__out.nested(#key, #name, &self.#member, &#nest);)
        }
        Storage::Each { .. } => quote!(__out.each(#key, #name, #secret, &self.#member, #encode);),
        Storage::Optional => {
            quote!(__out.optional(#key, #name, #secret, &self.#member, #encode);)
        }
        Storage::Defaulted(_) | Storage::Required => {
            quote!(__out.value(#key, #name, #secret, &self.#member, #encode);)
        }
    })
}

fn decode_field(plan: &Plan<'_>) -> TokenStream {
    let Plan {
        field,
        key,
        name,
        secret,
        ..
    } = plan;
    let ty = field.ty;
    let expected = type_name(field.value_type());
    let (_, decode) = codec(field);
    match &plan.storage {
        Storage::Skipped => quote!(::core::default::Default::default()),
        Storage::EachNested { entry } => {
            let nest = nest_ident(plan);
            quote!(__input.each_nested::<#ty, #entry>(#key, #name, &#nest))
        }
        Storage::Nested => {
            let nest = nest_ident(plan);
            quote!(__input.nested::<#ty>(#key, #name, &#nest))
        }
        Storage::Each { entry } => {
            quote!(__input.each::<#ty, #entry>(#key, #name, #secret, #expected, #decode))
        }
        Storage::Optional => quote!(__input.optional(#key, #name, #secret, #expected, #decode)),
        Storage::Defaulted(default) => {
            let expr = default_expr(default);
            quote!(__input.defaulted(#key, #name, #secret, #expected, #decode, || -> #ty { #expr }))
        }
        Storage::Required => quote!(__input.required(#key, #name, #secret, #expected, #decode)),
    }
}
