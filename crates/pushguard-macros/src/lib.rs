//! `#[pushguard::job]`: one line that runs a function as one guarded job
//! run. Use it through the `pushguard` crate (feature `macros`, on by
//! default), which documents it; this crate only holds the attribute.
//!
//! The attribute rewrites the body into a call of `pushguard::JobRun`'s
//! builder and `instrument` (or `instrument_async`), so every behaviour is
//! the library's and the attribute adds no runtime code of its own.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod args;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens as _, quote, quote_spanned};
use syn::ext::IdentExt as _;
use syn::spanned::Spanned as _;
use syn::{AttrStyle, Error, Item, ItemFn, ReturnType};

use args::Args;

/// Runs the function as one guarded job run: documented where users meet it,
/// as `pushguard::job`.
#[proc_macro_attribute]
pub fn job(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(args.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        // The item goes out unchanged next to the error, so the error is the
        // only one and not followed by "cannot find function".
        Err(error) => {
            let mut tokens = error.to_compile_error();
            item.to_tokens(&mut tokens);
            tokens.into()
        }
    }
}

fn expand(args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let function = function(item)?;
    let args: Args = syn::parse2(args)?;
    if let Some(constness) = &function.sig.constness {
        return Err(Error::new(
            constness.span(),
            "#[pushguard::job] cannot go on a `const fn`: a run pushes its metrics at run time; \
             remove `const`",
        ));
    }
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer));

    let name = match &args.name {
        Some(name) => name.to_token_stream(),
        // Every binary's `main` is called main: name its job after the
        // binary instead, or all of them would share one group.
        None if sig.ident == "main" => quote! {
            match ::core::option_env!("CARGO_BIN_NAME") {
                ::core::option::Option::Some(name) => name,
                ::core::option::Option::None => ::core::env!("CARGO_CRATE_NAME"),
            }
        },
        None => {
            syn::LitStr::new(&sig.ident.unraw().to_string(), sig.ident.span()).to_token_stream()
        }
    };
    let mut calls = TokenStream2::new();
    for (label, value) in &args.labels {
        calls.extend(quote! { .label(#label, #value) });
    }
    if let Some(put) = args.put {
        let method = if put { quote!(Put) } else { quote!(Post) };
        calls.extend(quote! { .method(::pushguard::Method::#method) });
    }
    if let Some(url) = &args.gateway {
        calls.extend(quote! { .gateway_url(#url) });
    }
    if let Some(interval) = args.expected_interval {
        let (secs, nanos) = (interval.as_secs(), interval.subsec_nanos());
        calls.extend(quote! {
            .expected_interval(::core::time::Duration::new(#secs, #nanos))
        });
    }

    // The outcome is read from the return type: a type that is not a job
    // result is reported there.
    let output_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let body = if sig.asyncness.is_some() {
        let instrument = quote_spanned!(output_span=> instrument_async);
        quote! {
            ::pushguard::JobRun::new(#name) #calls
                .#instrument(async move #block)
                .await
        }
    } else {
        let instrument = quote_spanned!(output_span=> instrument);
        quote! {
            ::pushguard::JobRun::new(#name) #calls
                .#instrument(move || #block)
        }
    };
    Ok(quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    })
}

/// The item as a function with a body, or an error on the item that says
/// where the attribute goes.
fn function(item: TokenStream2) -> syn::Result<ItemFn> {
    if let Ok(function) = syn::parse2::<ItemFn>(item.clone()) {
        return Ok(function);
    }
    if let Ok(declaration) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        return Err(Error::new(
            declaration.sig.fn_token.span(),
            "#[pushguard::job] needs a function with a body; on a trait, put it on the method \
             of the implementation",
        ));
    }
    let parsed: Item = syn::parse2(item)?;
    let (span, what): (Span, &str) = match &parsed {
        Item::Struct(item) => (item.struct_token.span(), "a struct"),
        Item::Enum(item) => (item.enum_token.span(), "an enum"),
        Item::Union(item) => (item.union_token.span(), "a union"),
        Item::Impl(item) => (
            item.impl_token.span(),
            "an impl block (put it on one of its methods)",
        ),
        Item::Trait(item) => (item.trait_token.span(), "a trait"),
        Item::Mod(item) => (item.mod_token.span(), "a module"),
        Item::Const(item) => (item.const_token.span(), "a constant"),
        Item::Static(item) => (item.static_token.span(), "a static"),
        Item::Type(item) => (item.type_token.span(), "a type alias"),
        Item::Use(item) => (item.use_token.span(), "a use declaration"),
        other => (other.span(), "this item"),
    };
    Err(Error::new(
        span,
        format!(
            "#[pushguard::job] goes on a function (`fn` or `async fn`), not on {what}; \
             put it on the function that runs the job"
        ),
    ))
}
