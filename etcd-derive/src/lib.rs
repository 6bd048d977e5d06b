//! `#[derive(EtcdConfig)]` for the `etcd-config` crate. Use it through `etcd_config::EtcdConfig`;
//! the attributes are documented there.
//!
//! The pipeline: [`ast`] reads the struct (keeping syn's nodes for spans), [`attr`] parses each
//! `#[etcd(...)]`, [`valid`] checks what involves several attributes or fields, and [`expand`]
//! writes the impl. Every error is collected in a [`ctxt::Ctxt`] and reported at once, followed
//! by a stub impl ([`fallback`]) so no follow-on errors pile up.

mod ast;
mod attr;
mod case;
mod ctxt;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;

/// Derives `etcd_config::EtcdConfig`: one etcd key per field under `#[etcd(prefix = "...")]`.
#[proc_macro_derive(EtcdConfig, attributes(etcd))]
pub fn derive_etcd_config(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
