#!/usr/bin/env python3
"""The Python peer of `pushguard run` in `scripts/bench runner`.

APScheduler 3.11 (BackgroundScheduler) with N jobs. Each job does what
pushguard's `builtin = "noop"` job does: nothing, then push its run's metrics
to the Pushgateway with prometheus_client (grouping key job=NAME): start,
completion and success timestamps, duration, exit code, failed flag and a
runs counter by outcome. The push is pushadd_to_gateway (POST), as pushguard
pushes by default, so that a run never replaces another family of the group.

Modes:
  idle  every job on a daily cron at --idle-hour:00 UTC (the bench picks an
        hour far from now, so that nothing fires while it measures)
  busy  every job every second (cron second='*')

Each job returns its actual start (time.time() when the job function began);
the EVENT_JOB_EXECUTED listener pairs it with the event's scheduled_run_time,
so lag = actual start - scheduled time of that very run. Runs APScheduler did
not start (misfired, or the job's previous run still going: max_instances=1,
like pushguard's overlap = "forbid") are counted as skipped.

The script writes --ready once the scheduler runs, and on SIGTERM or SIGINT
shuts the scheduler down (waiting for running jobs) and writes --out as JSON:
{"runs": [{"job", "scheduled", "start", "lag"}...], "skipped": [...],
"push_errors": N, "versions": {...}}.
"""

import argparse
import json
import signal
import threading
import time
from datetime import timezone
from importlib.metadata import version

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway


def make_job(name, gateway, errors, lock):
    """One job: its own registry with the families pushguard pushes per run."""
    registry = CollectorRegistry()

    def gauge(metric, help_text):
        return Gauge(metric, help_text, registry=registry)

    last_start = gauge("job_last_start_timestamp_seconds", "Unix time the run started.")
    last_completion = gauge("job_last_completion_timestamp_seconds", "Unix time the run ended.")
    last_success = gauge("job_last_success_timestamp_seconds", "Unix time of the last success.")
    duration = gauge("job_duration_seconds", "Duration of the last run.")
    exit_code = gauge("job_last_exit_code", "Exit code of the last run.")
    failed = gauge("job_last_run_failed", "1 when the last run failed.")
    runs = Counter("job_runs", "Runs by outcome.", ["outcome"], registry=registry)
    for outcome in ("success", "failure", "timeout", "skipped"):
        runs.labels(outcome)

    def job():
        start = time.time()
        last_start.set(start)
        # The work: nothing, like builtin = "noop".
        end = time.time()
        last_completion.set(end)
        last_success.set(end)
        duration.set(end - start)
        exit_code.set(0)
        failed.set(0)
        runs.labels("success").inc()
        try:
            pushadd_to_gateway(gateway, job=name, registry=registry, timeout=5)
        except Exception:  # noqa: BLE001 - a failed push is counted, the run goes on
            with lock:
                errors[0] += 1
        return start

    return job


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True, help="HOST:PORT of the Pushgateway")
    parser.add_argument("--mode", choices=("idle", "busy"), required=True)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=100,
                        help="thread pool size (default 100: every job can run at once, as in pushguard)")
    parser.add_argument("--idle-hour", type=int, default=0, help="UTC hour of the idle jobs' daily run")
    parser.add_argument("--ready", help="file written once the scheduler runs")
    parser.add_argument("--out", help="JSON file for the runs, written on SIGTERM/SIGINT")
    args = parser.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    lock = threading.Lock()
    runs, skipped, errors = [], [], [0]

    def executed(event):
        scheduled = event.scheduled_run_time.timestamp()
        start = event.retval
        with lock:
            runs.append({"job": event.job_id, "scheduled": scheduled, "start": start,
                         "lag": start - scheduled})

    def not_run(event):
        with lock:
            skipped.append({"job": event.job_id, "code": event.code,
                            "scheduled": [t.timestamp() for t in getattr(event, "scheduled_run_times", None)
                                          or [event.scheduled_run_time]]})

    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=args.workers)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 1},
        timezone=timezone.utc,
    )
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    scheduler.add_listener(not_run, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
    for i in range(args.jobs):
        name = f"bench_py_{i:03d}"
        if args.mode == "busy":
            trigger = CronTrigger(second="*", timezone=timezone.utc)
        else:
            trigger = CronTrigger(hour=args.idle_hour, minute=0, second=0, timezone=timezone.utc)
        scheduler.add_job(make_job(name, args.gateway, errors, lock), trigger, id=name, name=name)
    scheduler.start()
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")

    stop.wait()  # a lock wait, no polling
    scheduler.shutdown(wait=True)
    if args.out:
        with lock:
            result = {
                "runs": runs,
                "skipped": skipped,
                "push_errors": errors[0],
                "versions": {"apscheduler": version("apscheduler"),
                             "prometheus_client": version("prometheus_client")},
                "workers": args.workers,
            }
        with open(args.out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
