//! Prometheus remote write 1.0: one run as a snappy-compressed protobuf
//! `WriteRequest`, for Prometheus (`--web.enable-remote-write-receiver`),
//! Mimir, Cortex, Thanos Receive, VictoriaMetrics and the managed stores.
//!
//! The four messages version 1.0 sends (`prompb/remote.proto` and
//! `prompb/types.proto`) are written here with `prost`'s derive — no `protoc`
//! and no build script. Every sample of a run carries the run's end as its
//! timestamp in milliseconds; each series has `__name__`, `job`, the grouping
//! labels and its own labels, sorted by name as the protocol requires. Labels
//! with an empty value are left out: in Prometheus an empty value is the same
//! as no label, and a receiver may refuse it.

use std::collections::BTreeMap;
#[cfg(feature = "state")]
use std::sync::RwLockWriteGuard;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::SystemTime;

#[cfg(feature = "state")]
use base64::Engine as _;
use prost::Message as _;

use crate::body::Body;
use crate::error::PushError;
use crate::grouping::GroupingKey;

/// `Content-Type` of a remote-write request.
pub(crate) const CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Encoding` of a remote-write request: the snappy block format.
pub(crate) const CONTENT_ENCODING: &str = "snappy";
/// The protocol version header and the version sent.
pub(crate) const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
pub(crate) const VERSION: &str = "0.1.0";
/// The tenant header of multi-tenant stores (Mimir, Cortex, Thanos Receive).
pub(crate) const TENANT_HEADER: &str = "X-Scope-OrgID";

/// `prometheus.WriteRequest`; field 3 (metadata) is not sent.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`: labels sorted by name, then samples.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: a value at a Unix time in milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A group's newest series by metric name.
type ByName = BTreeMap<String, Vec<TimeSeries>>;

/// The newest series of every group a client delivered, for writing them
/// again ([`State::refresh`](crate::State::refresh)): a remote-written
/// sample is visible to instant queries only within the lookback window.
/// Series replace the cached ones of the same metric name, group by group —
/// what a Pushgateway keeps after a POST — so a failed run does not drop
/// the last success time.
#[derive(Debug, Default)]
pub(crate) struct Latest {
    groups: Mutex<BTreeMap<String, ByName>>,
    /// Held for reading from a run's end stamp until its request is in the
    /// outbox, for writing while a refresh checks the outbox and stamps:
    /// a refresh never goes out between a run's stamp and its request, so
    /// it can never make that run's samples out of order.
    gate: RwLock<()>,
}

impl Latest {
    /// Remembers the series of a delivered request of the group `path`.
    pub(crate) fn remember(&self, path: &str, wire: &[u8]) {
        let Ok(raw) = snap::raw::Decoder::new().decompress_vec(wire) else {
            return;
        };
        let Ok(request) = WriteRequest::decode(raw.as_slice()) else {
            return;
        };
        let mut by_name: BTreeMap<String, Vec<TimeSeries>> = BTreeMap::new();
        for series in request.timeseries {
            let name = series
                .labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .unwrap_or_default();
            by_name.entry(name).or_default().push(series);
        }
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.entry(path.to_owned()).or_default().extend(by_name);
    }

    /// The groups remembered.
    #[cfg(feature = "state")]
    pub(crate) fn paths(&self) -> Vec<String> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.keys().cloned().collect()
    }

    /// The newest series of `path` stamped `at`, as wire bytes.
    #[cfg(feature = "state")]
    pub(crate) fn request(&self, path: &str, at: SystemTime) -> Option<Result<Vec<u8>, PushError>> {
        let timestamp = millis(at);
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let timeseries = groups
            .get(path)?
            .values()
            .flatten()
            .map(|series| TimeSeries {
                labels: series.labels.clone(),
                samples: series
                    .samples
                    .last()
                    .map(|s| Sample {
                        value: s.value,
                        timestamp,
                    })
                    .into_iter()
                    .collect(),
            })
            .collect();
        Some(compress(&WriteRequest { timeseries }.encode_to_vec()))
    }

    /// Held by a run from its end stamp until its request is spooled.
    pub(crate) fn run_ending(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a refresh while it checks the outbox and stamps.
    #[cfg(feature = "state")]
    pub(crate) fn refreshing(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn millis(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The request for `body` in the group `key`, every sample at `at`.
pub(crate) fn request(key: &GroupingKey, body: &Body, at: SystemTime) -> WriteRequest {
    let timestamp = millis(at);
    let timeseries = body
        .samples()
        .into_iter()
        .map(|(name, labels, value)| {
            let mut all = Vec::with_capacity(labels.len() + key.labels().len() + 2);
            all.push(Label {
                name: "__name__".into(),
                value: name,
            });
            all.push(Label {
                name: "job".into(),
                value: key.job().to_owned(),
            });
            for (name, value) in key.labels() {
                all.push(Label {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
            all.extend(
                labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value }),
            );
            all.retain(|label| !label.value.is_empty());
            all.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels: all,
                samples: vec![Sample { value, timestamp }],
            }
        })
        .collect();
    WriteRequest { timeseries }
}

/// The request for `body` in the group `key` at `at`, protobuf-encoded and
/// snappy-compressed: the bytes that go on the wire.
pub(crate) fn encode(key: &GroupingKey, body: &Body, at: SystemTime) -> Result<Vec<u8>, PushError> {
    compress(&request(key, body, at).encode_to_vec())
}

fn compress(raw: &[u8]) -> Result<Vec<u8>, PushError> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .map_err(|e| PushError::config_with("cannot compress the remote-write request", e))
}

/// The wire bytes as the outbox stores them (its bodies are text): base64.
#[cfg(feature = "state")]
pub(crate) fn to_stored(wire: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(wire)
}

/// The wire bytes of a stored remote-write request.
#[cfg(feature = "state")]
pub(crate) fn from_stored(stored: &str) -> Result<Vec<u8>, PushError> {
    base64::engine::general_purpose::STANDARD
        .decode(stored.trim())
        .map_err(|e| {
            PushError::body(format!(
                "a stored remote-write request is not valid base64 ({e}): drop it with `pushguard outbox --drop ID`"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn decode(wire: &[u8]) -> WriteRequest {
        let raw = snap::raw::Decoder::new().decompress_vec(wire).unwrap();
        WriteRequest::decode(raw.as_slice()).unwrap()
    }

    fn labels(series: &TimeSeries) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect()
    }

    #[test]
    fn a_body_becomes_sorted_series_at_the_run_end() {
        let key = GroupingKey::new("backup")
            .unwrap()
            .label("host", "db/1")
            .unwrap()
            .label("empty", "")
            .unwrap();
        let mut body = Body::new();
        body.add_text(
            "# TYPE t_seconds histogram\n\
             t_seconds_bucket{le=\"1\",Zone=\"a \\\"b\\\" \\\\ \\n c\"} 2\n\
             t_seconds_bucket{le=\"+Inf\",Zone=\"x\"} 3\n\
             t_seconds_sum 4.5\n\
             t_seconds_count 3\n\
             # TYPE up gauge\n\
             up NaN\n",
        )
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let request = decode(&encode(&key, &body, at).unwrap());
        assert_eq!(request.timeseries.len(), 5);
        let first = &request.timeseries[0];
        assert_eq!(
            labels(first),
            vec![
                ("Zone", "a \"b\" \\ \n c"),
                ("__name__", "t_seconds_bucket"),
                ("host", "db/1"),
                ("job", "backup"),
                ("le", "1"),
            ]
        );
        assert_eq!(
            first.samples,
            vec![Sample {
                value: 2.0,
                timestamp: 1_700_000_000_123
            }]
        );
        let sum = &request.timeseries[2];
        assert_eq!(labels(sum)[0], ("__name__", "t_seconds_sum"));
        assert_eq!(sum.samples[0].value, 4.5);
        assert!(request.timeseries[4].samples[0].value.is_nan());
    }

    #[cfg(feature = "state")]
    #[test]
    fn stored_requests_round_trip_and_garbage_is_named() {
        let wire = vec![0u8, 1, 2, 255];
        assert_eq!(from_stored(&to_stored(&wire)).unwrap(), wire);
        let error = from_stored("not base64!").unwrap_err().to_string();
        assert!(error.contains("--drop"), "{error}");
    }
}
