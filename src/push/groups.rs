//! The groups a Pushgateway holds and when each was last pushed, from its
//! JSON API (`/api/v1/metrics`): what `pushguard prune` decides on.

use super::Gateway;
use crate::error::PushError;
use crate::grouping::GroupingKey;

impl Gateway {
    /// Every group the gateway holds, with the Unix time of its last push
    /// (its `push_time_seconds`), as the gateway's `/api/v1/metrics` reports
    /// them; one attempt within the client's deadline. The `instance=""`
    /// the gateway reports on groups pushed without an instance is not part
    /// of the key. A group whose labels cannot form a key (it was pushed by
    /// another client with an invalid label) is left out.
    ///
    /// ```no_run
    /// let gateway = pushguard::Gateway::builder().build()?;
    /// for (key, pushed) in gateway.groups()? {
    ///     println!("{} last pushed at {pushed}", key.display());
    /// }
    /// # Ok::<(), pushguard::PushError>(())
    /// ```
    pub fn groups(&self) -> Result<Vec<(GroupingKey, f64)>, PushError> {
        if self.inner.remote_write {
            return Err(PushError::config(format!(
                "{} is a remote-write receiver: it has no groups to list",
                self.inner.base
            )));
        }
        let this = self.clone();
        let limit = self.inner.deadline;
        let text = self.block(limit, async move { this.fetch_groups(limit).await })?;
        let url = format!("{}/api/v1/metrics", self.inner.base);
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            PushError::config_with(
                format!("{url} did not answer with the Pushgateway's JSON API"),
                e,
            )
        })?;
        let groups = json["data"].as_array().ok_or_else(|| {
            PushError::config(format!(
                "{url} did not answer with the Pushgateway's JSON API: no `data` list"
            ))
        })?;
        Ok(groups.iter().filter_map(group).collect())
    }

    async fn fetch_groups(&self, limit: std::time::Duration) -> Result<String, PushError> {
        let url = format!("{}/api/v1/metrics", self.inner.base);
        let response = self
            .inner
            .client
            .get(&url)
            .headers(self.inner.headers.clone())
            .timeout(limit)
            .send()
            .await
            .map_err(|e| match e.is_timeout() {
                true => super::timeout(limit, &url, 1),
                false => PushError::Transport {
                    url: url.clone(),
                    attempts: 1,
                    source: e.without_url(),
                },
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(PushError::Rejected {
                method: "GET",
                url,
                status: status.as_u16(),
                body: text.trim().to_owned(),
            });
        }
        Ok(text)
    }
}

/// One group of the JSON API: its key and last push time.
fn group(entry: &serde_json::Value) -> Option<(GroupingKey, f64)> {
    let labels = entry["labels"].as_object()?;
    let mut key = GroupingKey::new(labels.get("job")?.as_str()?).ok()?;
    for (name, value) in labels {
        let value = value.as_str()?;
        if name == "job" || (name == "instance" && value.is_empty()) {
            continue;
        }
        key = key.label(name.clone(), value).ok()?;
    }
    let pushed = entry["push_time_seconds"]["metrics"][0]["value"]
        .as_str()?
        .parse()
        .ok()?;
    Some((key, pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_the_json_api() {
        let entry = serde_json::json!({
            "labels": {"job": "backup", "instance": "", "host": "db/1"},
            "push_time_seconds": {"metrics": [{"labels": {}, "value": "1.7e+09"}]},
        });
        let (key, pushed) = group(&entry).unwrap();
        assert_eq!(key.display(), r#"{job="backup",host="db/1"}"#);
        assert_eq!(pushed, 1.7e9);
        let named = serde_json::json!({
            "labels": {"job": "j", "instance": "web-1"},
            "push_time_seconds": {"metrics": [{"value": "5"}]},
        });
        assert_eq!(
            group(&named).unwrap().0.display(),
            r#"{job="j",instance="web-1"}"#
        );
        assert!(group(&serde_json::json!({"labels": {"host": "x"}})).is_none());
    }
}
