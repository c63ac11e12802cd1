//! `Body::add_text` on arbitrary input: never panics; accepted text is
//! accepted again as the body holds it; every refusal names a line.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(input) = std::str::from_utf8(data) else {
            return;
        };
        let mut body = pushguard::Body::new();
        match body.add_text(input) {
            Ok(()) => {
                let mut again = pushguard::Body::new();
                again
                    .add_text(body.as_str())
                    .expect("the body of accepted text is accepted again");
                assert_eq!(again.as_str(), body.as_str());
            }
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains("line "), "no line in {message:?}");
            }
        }
    });
}
