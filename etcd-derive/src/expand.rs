//! Writes the `EtcdConfig` impl. Everything is named by absolute path through
//! `::etcd_config::__private`, so the user's own `Result`, `Option` or `String` cannot interfere.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use crate::ast::{self, Field, Input, Shape};
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
        (Err(errors), _) => fallback(input, errors),
        (Ok(()), None) => unreachable!("no struct was read, yet no error was recorded"),
    }
}

/// The errors, plus an impl with empty bodies so the user sees only what they got wrong.
fn fallback(input: &syn::DeriveInput, errors: Vec<syn::Error>) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    if !input.generics.params.is_empty() {
        // A stub for a generic struct would need bounds of its own and fail on them.
        return quote!(#(#errors)*);
    }
    let ident = &input.ident;
    quote! {
        #(#errors)*
        const _: () = {
            #[automatically_derived]
            impl ::etcd_config::__private::EtcdConfig for #ident {
                const PREFIX: &'static str = "";
                fn __describe(_: &mut ::etcd_config::__private::Describe<'_>) {}
                fn __encode(&self, _: &mut ::etcd_config::__private::Encoder<'_>) {}
                fn __decode(_: &mut ::etcd_config::__private::Decoder<'_>) -> ::core::option::Option<Self> {
                    ::core::option::Option::None
                }
            }
        };
    }
}

fn impl_struct(input: &Input<'_>) -> TokenStream {
    let ident = &input.original.ident;
    let prefix = input.attrs.prefix.get().expect("validated").value();
    let deny_unknown = input.attrs.deny_unknown_keys.is_set();
    let fields: Vec<&Field<'_>> = input.fields.iter().collect();

    let describe = fields.iter().filter_map(|f| describe_field(input, f));
    let encode = fields.iter().filter_map(|f| encode_field(input, f));
    let locals: Vec<syn::Ident> = fields
        .iter()
        .map(|f| quote::format_ident!("__field_{}", f.name()))
        .collect();
    let decode = fields.iter().zip(&locals).map(|(f, local)| {
        let value = decode_field(input, f);
        quote! { let #local = #value; }
    });
    let assign = fields.iter().zip(&locals).map(|(f, local)| {
        let name = f.ident;
        if f.attrs.skip.is_set() {
            quote! { #name: #local }
        } else {
            quote! { #name: #local? }
        }
    });
    let validate = input.attrs.validate.get().map(|path| {
        quote! {
            fn validate(&self) -> ::core::result::Result<(), ::etcd_config::__private::String> {
                #path(self)
            }
        }
    });

    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::etcd_config::__private::EtcdConfig for #ident {
                const PREFIX: &'static str = #prefix;

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
        (
            quote!(|__v: &#ty| ::etcd_config::__private::encode(__v)),
            quote!(|__s: &str| ::etcd_config::__private::decode::<#ty>(__s)),
        )
    }
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

fn describe_field(input: &Input<'_>, field: &Field<'_>) -> Option<TokenStream> {
    let a = &field.attrs;
    if a.skip.is_set() {
        return None;
    }
    let key = field.key(input);
    let name = field.name();
    let ty = field.ty;
    let value_ty = field.value_type();
    if a.each.is_set() && a.nested.is_set() {
        return Some(quote!(__out.each_nested::<#value_ty>(#key, #name);));
    }
    if a.nested.is_set() {
        return Some(quote!(__out.nested::<#ty>(#key, #name);));
    }
    let type_text = type_name(value_ty);
    let doc = &field.doc;
    let secret = a.secret.is_set();
    let required = matches!(field.shape, Shape::Plain) && !a.default.is_set();
    let info = quote! {
        ::etcd_config::__private::FieldInfo {
            key: #key, field: #name, type_name: #type_text, doc: #doc,
            required: #required, secret: #secret,
        }
    };
    if a.each.is_set() {
        return Some(quote!(__out.each(#info);));
    }
    let (encode, _) = codec(field);
    let default = match a.default.get() {
        Some(default) => {
            let expr = default_expr(default);
            quote! {
                ::core::option::Option::Some({
                    let __default: #ty = #expr;
                    (#encode)(&__default)
                })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    Some(quote!(__out.value(#info, #default);))
}

fn encode_field(input: &Input<'_>, field: &Field<'_>) -> Option<TokenStream> {
    let a = &field.attrs;
    if a.skip.is_set() {
        return None;
    }
    let key = field.key(input);
    let name = field.name();
    let member = field.ident;
    let secret = a.secret.is_set();
    if a.each.is_set() && a.nested.is_set() {
        return Some(quote!(__out.each_nested(#key, #name, &self.#member);));
    }
    if a.nested.is_set() {
        return Some(quote!(__out.nested(#key, #name, &self.#member);));
    }
    let (encode, _) = codec(field);
    Some(if a.each.is_set() {
        quote!(__out.each(#key, #name, #secret, &self.#member, #encode);)
    } else if let Shape::Option(_) = field.shape {
        quote!(__out.optional(#key, #name, #secret, &self.#member, #encode);)
    } else {
        quote!(__out.value(#key, #name, #secret, &self.#member, #encode);)
    })
}

fn decode_field(input: &Input<'_>, field: &Field<'_>) -> TokenStream {
    let a = &field.attrs;
    if a.skip.is_set() {
        return quote!(::core::default::Default::default());
    }
    let key = field.key(input);
    let name = field.name();
    let ty = field.ty;
    let value_ty = field.value_type();
    let secret = a.secret.is_set();
    let expected = type_name(value_ty);
    if a.each.is_set() && a.nested.is_set() {
        return quote!(__input.each_nested::<#ty, #value_ty>(#key, #name));
    }
    if a.nested.is_set() {
        return quote!(__input.nested::<#ty>(#key, #name));
    }
    let (_, decode) = codec(field);
    if a.each.is_set() {
        return quote!(__input.each::<#ty, #value_ty>(#key, #name, #secret, #expected, #decode));
    }
    if let Shape::Option(_) = field.shape {
        return quote!(__input.optional(#key, #name, #secret, #expected, #decode));
    }
    match a.default.get() {
        Some(default) => {
            let expr = default_expr(default);
            quote!(__input.defaulted(#key, #name, #secret, #expected, #decode, || -> #ty { #expr }))
        }
        None => quote!(__input.required(#key, #name, #secret, #expected, #decode)),
    }
}
