//! A tower middleware that counts and times HTTP requests:
//! `http_requests_total{method,route,status}`,
//! `http_request_duration_seconds{method,route}` and
//! `http_request_errors_total{method,route}` (5xx answers and service errors).
//!
//! The `route` label is axum's matched route template (`/api/jobs/{name}`),
//! never the raw path, so the number of series stays bounded; requests that
//! match no route are labelled `unmatched`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::catalog::metric;

/// The three HTTP families; cheap to clone. Put [`HttpMetrics::layer`] on an
/// axum `Router` (or any tower service taking `http::Request`).
///
/// ```
/// use axum::{Router, routing::get};
///
/// let registry = pushguard::prometheus::Registry::new();
/// let metrics = pushguard::HttpMetrics::new(&registry);
/// let app: Router = Router::new().route("/health", get(|| async { "ok" })).layer(metrics.layer());
/// # drop(app);
/// ```
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn opts(name: &str) -> (Opts, &'static [&'static str]) {
    let def = metric(name).unwrap_or_else(|| panic!("{name} is missing from the metric catalogue"));
    (Opts::new(def.name, def.help), def.labels)
}

impl HttpMetrics {
    /// Registers the families in `registry`. Create one per registry.
    pub fn new(registry: &Registry) -> HttpMetrics {
        let (o, labels) = opts("http_requests_total");
        let requests = IntCounterVec::new(o, labels).expect("valid catalogue names");
        let (o, labels) = opts("http_request_duration_seconds");
        let duration = HistogramVec::new(HistogramOpts::from(o).buckets(BUCKETS.to_vec()), labels)
            .expect("valid catalogue names");
        let (o, labels) = opts("http_request_errors_total");
        let errors = IntCounterVec::new(o, labels).expect("valid catalogue names");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(errors.clone()),
        ] {
            let _ = registry.register(collector);
        }
        HttpMetrics {
            requests,
            duration,
            errors,
        }
    }

    /// The tower layer that records every request.
    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Records one request by hand (for servers that are not tower services).
    /// `status` is `None` when the service failed without an answer.
    pub fn record(&self, method: &str, route: &str, status: Option<u16>, seconds: f64) {
        let code = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.requests
            .with_label_values(&[method, route, &code])
            .inc();
        self.duration
            .with_label_values(&[method, route])
            .observe(seconds);
        if status.is_none_or(|s| s >= 500) {
            self.errors.with_label_values(&[method, route]).inc();
        }
    }
}

/// A [`tower::Layer`] made by [`HttpMetrics::layer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service that [`HttpMetricsLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: HttpMetrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for HttpMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().as_str().to_owned();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
        let metrics = self.metrics.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let status = result.as_ref().ok().map(|r| r.status().as_u16());
            metrics.record(&method, &route, status, started.elapsed().as_secs_f64());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    fn value(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| {
                if m.get_histogram().get_sample_count() > 0 {
                    m.get_histogram().get_sample_count() as f64
                } else {
                    m.get_counter().get_value()
                }
            })
    }

    #[tokio::test]
    async fn counts_by_route_template_status_and_errors() {
        let registry = Registry::new();
        let metrics = HttpMetrics::new(&registry);
        let app: Router = Router::new()
            .route("/works/{id}", get(|| async { "a work" }))
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .layer(metrics.layer());
        for uri in ["/works/1", "/works/2", "/boom", "/nowhere"] {
            let request = http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            let _ = app.clone().oneshot(request).await.unwrap();
        }
        let req = |route: &str, status: &str| {
            value(
                &registry,
                "http_requests_total",
                &[("method", "GET"), ("route", route), ("status", status)],
            )
        };
        assert_eq!(req("/works/{id}", "200"), Some(2.0));
        assert_eq!(req("/boom", "500"), Some(1.0));
        assert_eq!(req("unmatched", "404"), Some(1.0));
        assert_eq!(
            value(
                &registry,
                "http_request_errors_total",
                &[("route", "/boom")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &registry,
                "http_request_errors_total",
                &[("route", "/works/{id}")]
            ),
            None
        );
        assert_eq!(
            value(
                &registry,
                "http_request_duration_seconds",
                &[("route", "/works/{id}")]
            ),
            Some(2.0)
        );
    }
}
