//! Grouping keys: any UTF-8 job name and label values survive
//! `path()` → `from_path()`; no path makes `from_path` panic.

use proptest::prelude::*;
use pushguard::GroupingKey;

use crate::{config, mutate, mutation, odd_text};

/// Values that hit every branch of the encoder: plain, `.`/`..`, empty,
/// slashes, `@base64`-looking text, base64 padding, odd Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._~-]{0,12}",
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("=".to_owned()),
        Just("/".to_owned()),
        Just("a@base64".to_owned()),
        Just("@base64".to_owned()),
        Just("%2F".to_owned()),
        odd_text(),
        (any::<String>(), odd_text()).prop_map(|(a, b)| a + &b),
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,10}"
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn keys_round_trip(
        job in value(),
        labels in prop::collection::vec((label_name(), value()), 0..5),
    ) {
        let Ok(mut key) = GroupingKey::new(job.clone()) else {
            prop_assert!(job.is_empty());
            return Ok(());
        };
        for (name, v) in labels {
            match key.clone().label(name.clone(), v) {
                Ok(next) => key = next,
                Err(_) => prop_assert!(name == "job" || name.starts_with("__")),
            }
        }
        let path = key.path();
        prop_assert!(path.starts_with("/metrics/job"));
        prop_assert!(
            !path.split('/').any(|segment| segment == "." || segment == ".."),
            "{path}"
        );
        prop_assert_eq!(GroupingKey::from_path(&path), Some(key));
    }

    #[test]
    fn mutated_paths_never_panic(
        job in value(),
        labels in prop::collection::vec((label_name(), value()), 0..4),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut key = match GroupingKey::new(job) {
            Ok(key) => key,
            Err(_) => GroupingKey::new("j").unwrap(),
        };
        for (name, v) in labels {
            if let Ok(next) = key.clone().label(name, v) {
                key = next;
            }
        }
        let mut tokens: Vec<String> = key.path().split_inclusive('/').map(str::to_owned).collect();
        mutate(&mut tokens, &mutations);
        let path = tokens.concat();
        if let Some(decoded) = GroupingKey::from_path(&path) {
            // Whatever decodes is a key that encodes and decodes again.
            prop_assert_eq!(GroupingKey::from_path(&decoded.path()), Some(decoded));
        }
    }

    #[test]
    fn arbitrary_paths_never_panic(path in any::<String>(), tail in "[a-zA-Z0-9@=/_.-]{0,40}") {
        let _ = GroupingKey::from_path(&path);
        let _ = GroupingKey::from_path(&format!("/metrics/{tail}"));
        let _ = GroupingKey::from_path(&format!("/metrics/job/{path}"));
    }
}
