//! Every misuse of `#[pushguard::job]` fails to compile with one error, on
//! the offending token, that says what to write instead. The expected
//! messages are the `.stderr` files beside each case in `ui/`.

#[test]
fn misuses_fail_to_compile_with_the_fix_in_the_message() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
