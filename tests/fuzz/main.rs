//! Property-based fuzzing of the library's parsers: the exposition-text
//! checker behind `Body::add_text` and the grouping-key path codec.
//!
//! The generators build near-valid input and then mutate it (tokens dropped,
//! duplicated or swapped; odd Unicode, huge numbers, CRLF, NUL inserted), so
//! the cases reach deep into the parsers instead of failing on the first byte.
//!
//! `PROPTEST_CASES` sets the number of cases of every property (the default
//! keeps `cargo test` fast); `scripts/fuzz` runs them with a large count.

mod grouping;
mod text;

use proptest::prelude::*;

/// The cases of a property: `PROPTEST_CASES` when set, else `default`.
pub fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Shrinking a long mutated input can take long; a few thousand
        // steps find a small enough one.
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

/// Odd text to splice into otherwise valid input.
pub fn odd_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\0".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just(" ".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("\u{3000}".to_owned()),
        Just("\u{200b}".to_owned()),
        Just("\u{202e}".to_owned()),
        Just("é".to_owned()),
        Just("😀".to_owned()),
        Just("\u{10ffff}".to_owned()),
        Just("\\".to_owned()),
        Just("\"".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("=".to_owned()),
        Just(",".to_owned()),
        Just("#".to_owned()),
        Just("/".to_owned()),
        Just("@".to_owned()),
        Just("1e309".to_owned()),
        Just("-1e309".to_owned()),
        Just("179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("NaN".to_owned()),
        Just("+Inf".to_owned()),
        Just("-0".to_owned()),
        Just("0x10".to_owned()),
        Just("1_000".to_owned()),
        any::<char>().prop_map(String::from),
        "\\PC{1,4}",
    ]
}

/// One mutation of a token list.
#[derive(Debug, Clone)]
pub enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Insert(usize, String),
    Replace(usize, String),
    /// Splices text inside a token, at a char position.
    Splice(usize, usize, String),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), odd_text()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        (any::<usize>(), odd_text()).prop_map(|(a, t)| Mutation::Replace(a, t)),
        (any::<usize>(), any::<usize>(), odd_text())
            .prop_map(|(a, b, t)| Mutation::Splice(a, b, t)),
    ]
}

/// Applies mutations to tokens, indices taken modulo the current length.
pub fn mutate(tokens: &mut Vec<String>, mutations: &[Mutation]) {
    for m in mutations {
        let len = tokens.len();
        if len == 0 {
            if let Mutation::Insert(_, text) = m {
                tokens.push(text.clone());
            }
            continue;
        }
        match m {
            Mutation::Drop(i) => {
                tokens.remove(i % len);
            }
            Mutation::Duplicate(i) => {
                let t = tokens[i % len].clone();
                tokens.insert(i % len, t);
            }
            Mutation::Swap(a, b) => tokens.swap(a % len, b % len),
            Mutation::Insert(i, text) => tokens.insert(i % (len + 1), text.clone()),
            Mutation::Replace(i, text) => tokens[i % len] = text.clone(),
            Mutation::Splice(i, at, text) => {
                let token = &mut tokens[i % len];
                let chars = token.chars().count();
                let byte = token
                    .char_indices()
                    .nth(at % (chars + 1))
                    .map_or(token.len(), |(b, _)| b);
                token.insert_str(byte, text);
            }
        }
    }
}
