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

pub use pushguard_testkit::fuzz::{Mutation, config, mutate};

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

/// Any mutation, inserting this crate's odd text.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    pushguard_testkit::fuzz::mutation(odd_text().boxed())
}
