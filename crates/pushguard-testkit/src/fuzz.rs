//! What the property-based fuzz tests of every crate share: the case count
//! (`PROPTEST_CASES`) and the mutations that turn near-valid token lists into
//! hostile input (tokens dropped, duplicated, swapped, replaced, or odd text
//! inserted or spliced in). Each crate brings its own odd text.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

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

/// One mutation of a token list.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Removes a token.
    Drop(usize),
    /// Repeats a token.
    Duplicate(usize),
    /// Exchanges two tokens.
    Swap(usize, usize),
    /// Inserts text as a token of its own.
    Insert(usize, String),
    /// Replaces a token by text.
    Replace(usize, String),
    /// Splices text inside a token, at a char position.
    Splice(usize, usize, String),
}

/// Any mutation, with `odd` as the text it inserts.
pub fn mutation(odd: BoxedStrategy<String>) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), odd.clone()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        (any::<usize>(), odd.clone()).prop_map(|(a, t)| Mutation::Replace(a, t)),
        (any::<usize>(), any::<usize>(), odd).prop_map(|(a, b, t)| Mutation::Splice(a, b, t)),
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
