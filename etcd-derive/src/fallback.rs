//! What the derive emits when the struct has errors: the errors, and an impl with empty bodies,
//! so the user sees only what they got wrong and not every use of the type failing with it.

use proc_macro2::TokenStream;
use quote::quote;

/// The errors, plus stub impls of `EtcdConfig` and `EtcdFields`. For a generic struct the stub carries the
/// struct's generics, and bounds `Self` by what the trait requires, so it never adds an error
/// of its own.
pub(crate) fn stub(input: &syn::DeriveInput, errors: Vec<syn::Error>) -> TokenStream {
    let errors = errors.iter().map(syn::Error::to_compile_error);
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut bounds = where_clause
        .map(|w| w.predicates.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    bounds.push(syn::parse_quote!(Self: ::core::marker::Send + ::core::marker::Sync + 'static));
    quote! {
        #(#errors)*
        #[allow(non_upper_case_globals, unused_attributes, unused_qualifications)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics ::etcd_config::__private::EtcdConfig for #ident #ty_generics
            where
                #(#bounds,)*
            {
                const PREFIX: &'static str = "";
            }

            #[automatically_derived]
            impl #impl_generics ::etcd_config::__private::EtcdFields for #ident #ty_generics
            where
                #(#bounds,)*
            {
                fn __describe(_: &mut ::etcd_config::__private::Describe<'_>) {}
                fn __encode(&self, _: &mut ::etcd_config::__private::Encoder<'_>) {}
                fn __decode(
                    _: &mut ::etcd_config::__private::Decoder<'_>,
                ) -> ::core::option::Option<Self> {
                    ::core::option::Option::None
                }
            }
        };
    }
}
