//! `GroupingKey::from_path` on arbitrary paths never panics, and whatever
//! it decodes encodes and decodes to the same key. The input also builds a
//! key (job and label values split on NUL) that must round-trip.

use pushguard::GroupingKey;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(input) = std::str::from_utf8(data) else {
            return;
        };
        if let Some(key) = GroupingKey::from_path(input) {
            assert_eq!(GroupingKey::from_path(&key.path()), Some(key));
        }
        let mut parts = input.split('\0');
        let Ok(mut key) = GroupingKey::new(parts.next().unwrap_or("")) else {
            return;
        };
        for (i, value) in parts.enumerate() {
            key = key
                .label(format!("l{i}"), value)
                .expect("a valid label name");
        }
        assert_eq!(GroupingKey::from_path(&key.path()), Some(key));
    });
}
