//! Real Prometheus and Alertmanager started by the harness.
