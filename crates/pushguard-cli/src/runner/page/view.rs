//! The page's markup. Every value goes through maud's `(…)`, which escapes
//! it; nothing here writes unescaped text. Names, labels and output sit in
//! `<bdi>` so right-to-left text cannot reorder what is around it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, html};

use super::format::{self, CHART_HEIGHT, CHART_WIDTH};
use super::{Gate, JobPage, JobRow, Letter, Overview, Run, Status, Triggered};

/// Outbox entries listed; a gateway down for long leaves thousands.
const OUTBOX_ROWS: usize = 100;

/// The id of the trigger form the buttons post through.
const FORM: &str = "trigger";

/// A run outcome's CSS class and chart colour (each readable as text on
/// white and as the background of white text: contrast 7:1 or more).
fn outcome_style(outcome: &str) -> (&'static str, &'static str) {
    match outcome {
        "success" => ("o-success", "#116329"),
        "failure" => ("o-failure", "#a40e26"),
        "timeout" => ("o-timeout", "#7d4e00"),
        "skipped" => ("o-skipped", "#4d5562"),
        _ => ("o-other", "#24292f"),
    }
}

fn page(title: &str, refresh: Option<Duration>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" data-refresh=[refresh.map(|r| r.as_secs())] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pushguard runner" }
                link rel="stylesheet" href="/assets/page.css";
                @if let Some(refresh) = refresh {
                    noscript { meta http-equiv="refresh" content=(refresh.as_secs()); }
                    script src="/assets/page.js" defer {}
                }
            }
            body { (body) }
        }
    }
}

fn when(at: DateTime<Utc>, tz: Tz, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339()) { (format::in_zone(at, tz)) }
        br;
        span class="rel" { (format::relative(format::seconds_until(at, now))) }
    }
}

fn badge(class: &str, text: &str) -> Markup {
    html! { span class={ "badge " (class) } { (text) } }
}

fn labels(labels: &std::collections::BTreeMap<String, String>) -> Markup {
    html! {
        @if !labels.is_empty() {
            ul class="labels" aria-label="labels" {
                @for (name, value) in labels {
                    li { bdi { (name) } "=" bdi { (value) } }
                }
            }
        }
    }
}

/// The small bar chart of the last runs' durations, oldest on the left.
fn chart(job: &JobRow) -> Markup {
    let runs: Vec<&Run> = job.runs.iter().take(format::CHART_RUNS).rev().collect();
    if runs.is_empty() {
        return html! { span class="muted" { "no runs" } };
    }
    let durations: Vec<f64> = runs.iter().map(|run| run.duration).collect();
    let bars = format::bars(&durations);
    let longest = durations.iter().copied().fold(0.0_f64, f64::max);
    let failed = runs
        .iter()
        .filter(|run| run.outcome == "failure" || run.outcome == "timeout")
        .count();
    let summary = format!(
        "Durations of the last {} runs of {}, oldest first: longest {}, {} failed",
        runs.len(),
        job.name,
        format::duration(longest),
        failed
    );
    html! {
        svg class="chart" xmlns="http://www.w3.org/2000/svg" width=(CHART_WIDTH) height=(CHART_HEIGHT)
            viewBox={ "0 0 " (CHART_WIDTH) " " (CHART_HEIGHT) } role="img" aria-label=(summary) {
            title { (summary) }
            @for (run, bar) in runs.iter().zip(&bars) {
                @let (class, colour) = outcome_style(&run.outcome);
                rect class=(class) data-outcome=(run.outcome) x=(bar.x) y=(bar.y)
                    width=(bar.width) height=(bar.height) fill=(colour) {
                    title {
                        (run.outcome) ", " (format::duration(run.duration)) ", "
                        (run.start.format("%Y-%m-%d %H:%M:%S UTC"))
                    }
                }
            }
        }
    }
}

fn trigger_button(name: &str, running: usize) -> Markup {
    html! {
        button type="submit" form=(FORM) formaction={ "/jobs/" (name) "/trigger" }
            aria-label={ "Run " (name) " now" } {
            "Run now"
        }
        @if running > 0 {
            br; span class="muted" { (running) " running" }
        }
    }
}

/// The form the trigger buttons post through, with the token field when the
/// API needs one.
fn trigger_form(gate: Gate) -> Markup {
    html! {
        form id=(FORM) method="post" class="token" {
            @if gate == Gate::Token {
                fieldset {
                    legend { "Trigger access" }
                    label for="token" { "API token, to run a job now" }
                    input id="token" name="token" type="password" autocomplete="off"
                        spellcheck="false";
                    label class="remember" {
                        input id="remember" type="checkbox";
                        " Remember it in this tab (session storage, until the tab closes; needs JavaScript)"
                    }
                }
            }
        }
    }
}

/// A word on a run's push when it has not reached the gateway.
fn push_note(push_status: &str) -> Markup {
    let note = match push_status {
        "rejected" => "push refused: see the outbox",
        "spooled" => "push waiting in the outbox",
        _ => return html! {},
    };
    html! { " " span class="note" { (note) } }
}

fn last_cells(job: &JobRow, now: DateTime<Utc>) -> Markup {
    html! {
        @match job.runs.first() {
            Some(run) => {
                @let (class, _) = outcome_style(&run.outcome);
                td {
                    (badge(class, &run.outcome))
                    (push_note(&run.push_status))
                    @if let Some(runner) = &job.fired_by {
                        span class="note-plain" { "fired by " bdi { (runner) } }
                    }
                    span class="rel line" { (format::relative(format::seconds_until(run.start, now))) }
                }
                td { (format::duration(run.duration)) }
                td class="num" { (run.exit_code) }
            }
            None => {
                td class="muted" { "no runs yet" }
                td class="muted" { "–" }
                td class="muted num" { "–" }
            }
        }
    }
}

/// `GET /`.
pub(super) fn overview(view: &Overview) -> Markup {
    let count = |status: Status| view.jobs.iter().filter(|j| j.status == status).count();
    let (failing, overdue) = (count(Status::Failing), count(Status::Overdue));
    let body = html! {
        header {
            h1 { "pushguard runner " bdi { (view.runner) } }
            p class="meta" {
                @if view.shared_schedule {
                    "Shares its schedule with the other runners on its PostgreSQL state: each \
                     fire runs once, on one of them. "
                }
                (view.jobs.len()) " jobs: "
                strong class="s-failing-text" { (failing) " failing" } ", "
                strong class="s-overdue-text" { (overdue) " overdue" } ". "
                "Updated " time datetime=(view.now.to_rfc3339()) { (view.now.format("%H:%M:%S UTC")) }
                "; refreshes every " (view.refresh.as_secs()) " s. "
                a href="#outbox" { "Outbox" }
                // The API takes the token as a bearer token only, which a
                // link cannot send.
                @if view.gate == Gate::Open { " · " a href="/api/jobs" { "JSON" } }
            }
        }
        main {
            (trigger_form(view.gate))
            table class="jobs" {
                caption { "Jobs, failing and overdue first" }
                thead {
                    tr {
                        th scope="col" { "Job" }
                        th scope="col" { "State" }
                        th scope="col" { "Schedule" }
                        th scope="col" { "Time zone" }
                        th scope="col" { "Next run" }
                        th scope="col" { "Last run" }
                        th scope="col" { "Duration" }
                        th scope="col" { "Exit code" }
                        th scope="col" { "Last 30 runs" }
                        th scope="col" { "Trigger" }
                    }
                }
                tbody {
                    @for job in &view.jobs {
                        tr class=(job.status.class()) data-job=(job.name) data-status=(job.status.label()) {
                            th scope="row" {
                                a href={ "/jobs/" (job.name) } { bdi { (job.name) } }
                                (labels(&job.labels))
                            }
                            td {
                                (badge(job.status.class(), job.status.label()))
                                @if job.running > 0 && job.status != Status::Running {
                                    " " (badge(Status::Running.class(), Status::Running.label()))
                                }
                            }
                            td { (job.schedule_words) br; code { (job.schedule) } }
                            td { (job.timezone.name()) }
                            td {
                                @match job.next {
                                    Some(next) => (when(next, job.timezone, view.now)),
                                    None => span class="muted" { "–" },
                                }
                            }
                            (last_cells(job, view.now))
                            td { (chart(job)) }
                            td { (trigger_button(&job.name, job.running)) }
                        }
                    }
                }
            }
            (outbox(view))
        }
    };
    page("Jobs", Some(view.refresh), body)
}

fn outbox(view: &Overview) -> Markup {
    html! {
        section id="outbox" aria-labelledby="outbox-title" {
            h2 id="outbox-title" { "Outbox" }
            @match &view.outbox {
                Err(error) => p class="error" { "The outbox could not be read: " (error) },
                Ok(letters) if letters.is_empty() => {
                    p { "Empty: every push has reached the gateway." }
                }
                Ok(letters) => {
                    @let dead = letters.iter().filter(|l| l.dead).count();
                    @let waiting = letters.len() - dead;
                    table class="outbox" {
                        caption {
                            (waiting) (if waiting == 1 { " push" } else { " pushes" })
                            " waiting for the gateway, "
                            (dead) (if dead == 1 { " dead letter" } else { " dead letters" })
                            " (refused by the gateway: kept, never retried)"
                        }
                        thead {
                            tr {
                                th scope="col" { "Job" }
                                th scope="col" { "Kind" }
                                th scope="col" { "Group" }
                                th scope="col" { "Queued" }
                                th scope="col" { "Attempts" }
                                th scope="col" { "Reason" }
                            }
                        }
                        tbody {
                            @for letter in letters.iter().take(OUTBOX_ROWS) { (letter_row(letter, view.now)) }
                        }
                    }
                    @if letters.len() > OUTBOX_ROWS {
                        p { "The first " (OUTBOX_ROWS) " of " (letters.len()) "; " code { "pushguard outbox" } " lists them all." }
                    }
                }
            }
        }
    }
}

fn letter_row(letter: &Letter, now: DateTime<Utc>) -> Markup {
    html! {
        tr class=(if letter.dead { "dead" } else { "pending" }) {
            th scope="row" {
                @match &letter.job {
                    Some(job) => bdi { (job) },
                    None => span class="muted" { "?" },
                }
            }
            td {
                @if letter.dead { (badge("o-failure", "dead letter")) }
                @else { (badge("o-skipped", "pending")) }
            }
            td { code { (letter.method) " " bdi { (letter.path) } } " (" (letter.bytes) " bytes)" }
            td {
                @match letter.created {
                    Some(at) => (when(at, Tz::UTC, now)),
                    None => "–",
                }
            }
            td class="num" { (letter.attempts) }
            td { bdi { (letter.last_error.as_deref().unwrap_or("not tried yet")) } }
        }
    }
}

/// `GET /jobs/NAME`.
pub(super) fn job_page(view: &JobPage) -> Markup {
    let job = &view.job;
    let body = html! {
        header {
            p { a href="/" { "← All jobs" } }
            h1 { "Job " bdi { (job.name) } " " (badge(job.status.class(), job.status.label())) }
            @if let Some(text) = &job.description { p { bdi { (text) } } }
        }
        main {
            dl class="facts" {
                dt { "Schedule" } dd { (job.schedule_words) " " code { (job.schedule) } }
                dt { "Time zone" } dd { (job.timezone.name()) }
                dt { "Next run" }
                dd {
                    @match job.next {
                        Some(next) => (when(next, job.timezone, view.now)),
                        None => "–",
                    }
                }
                dt { "Overlap" } dd { (job.overlap) }
                dt { "Running now" } dd { (job.running) }
                dt { "Labels" }
                dd {
                    @if job.labels.is_empty() { "none" } @else { (labels(&job.labels)) }
                }
            }
            (trigger_form(view.gate))
            p { (trigger_button(&job.name, 0)) }
            @if let Some(error) = &view.history_error {
                p class="error" { "The history could not be read: " (error) }
            }
            table class="runs" {
                caption { "Runs of " bdi { (job.name) } ", newest first (" (job.runs.len()) ")" }
                thead {
                    tr {
                        th scope="col" { "Started" }
                        th scope="col" { "Outcome" }
                        th scope="col" { "Duration" }
                        th scope="col" { "Exit code" }
                        th scope="col" { "Trace" }
                        th scope="col" { "Host" }
                        th scope="col" { "Push" }
                        th scope="col" { "Output" }
                    }
                }
                tbody {
                    @for run in &job.runs { (run_row(view, run)) }
                }
            }
            (output(view))
        }
    };
    page(&job.name, Some(view.refresh), body)
}

fn run_row(view: &JobPage, run: &Run) -> Markup {
    let (class, _) = outcome_style(&run.outcome);
    let shown = view
        .shown
        .as_ref()
        .is_some_and(|s| s.id == run.id && s.start == run.start);
    html! {
        tr class=(class) {
            th scope="row" { (when(run.start, view.job.timezone, view.now)) }
            td { (badge(class, &run.outcome)) }
            td { (format::duration(run.duration)) }
            td class="num" { (run.exit_code) }
            td {
                @match (&run.trace_id, &view.trace_url) {
                    (Some(id), Some(template)) => {
                        @match format::trace_link(template, id) {
                            Some(link) => a href=(link) rel="noreferrer" { code { (id) } },
                            None => code { (id) },
                        }
                    }
                    (Some(id), None) => code { (id) },
                    (None, _) => span class="muted" { "–" },
                }
            }
            td { @if let Some(host) = &run.host { bdi { (host) } } @else { "–" } }
            td { (run.push_status) }
            td {
                @match (run.id, run.output.is_some()) {
                    (_, false) => span class="muted" { "none" },
                    (_, true) if shown => "shown below",
                    (Some(id), true) => a href={ "?run=" (id) "#output" } { "show" },
                    (None, true) => "below",
                }
            }
        }
    }
}

fn output(view: &JobPage) -> Markup {
    html! {
        section id="output" aria-labelledby="output-title" {
            @match &view.shown {
                Some(run) => {
                    h2 id="output-title" {
                        "Output of the run started " (format::in_zone(run.start, view.job.timezone))
                    }
                    pre class="output" {
                        @for line in run.output.as_deref().unwrap_or("").lines() {
                            bdi { (line) } "\n"
                        }
                    }
                }
                None => {
                    h2 id="output-title" { "Output" }
                    p { "No kept output: its runs printed nothing, or they are older than the history." }
                }
            }
        }
    }
}

/// The answer to the trigger button.
pub(super) fn triggered(name: &str, answer: &Triggered) -> Markup {
    let (title, text): (&str, String) = match answer {
        Triggered::Started => (
            "Started",
            "The run has started; its result shows on the job's page when it ends.".to_owned(),
        ),
        Triggered::Skipped => (
            "Not started: still running",
            "A run of this job is still going on and its overlap policy is forbid, so no \
             second run was started. Try again when the current run has ended."
                .to_owned(),
        ),
        Triggered::NoSuchJob => ("No such job", "There is no job by this name.".to_owned()),
        Triggered::Refused(reason) => ("Not started: refused", format!("Refused: {reason}.")),
    };
    let body = html! {
        main class="answer" {
            h1 { (title) ": " bdi { (name) } }
            p role="status" data-answer=(match answer {
                Triggered::Started => "started",
                Triggered::Skipped => "skipped",
                Triggered::NoSuchJob => "no-such-job",
                Triggered::Refused(_) => "refused",
            }) { (text) }
            p {
                a href={ "/jobs/" (name) } { "Back to " bdi { (name) } } " · " a href="/" { "All jobs" }
            }
        }
    };
    page(title, None, body)
}

/// A page with one message and a link back.
pub(super) fn message(title: &str, text: &str, back: Option<&str>) -> Markup {
    let body = html! {
        main class="answer" {
            h1 { (title) }
            p { (text) }
            @if let Some(back) = back { p { a href=(back) { "Back" } } }
        }
    };
    page(title, None, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WCAG 2 contrast ratio of `#rrggbb` against white.
    fn contrast_with_white(colour: &str) -> f64 {
        let channel = |i: usize| {
            let c =
                f64::from(u8::from_str_radix(&colour[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let luminance = 0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2);
        1.05 / (luminance + 0.05)
    }

    #[test]
    fn outcome_colours_keep_seven_to_one_contrast_with_white() {
        for outcome in ["success", "failure", "timeout", "skipped", "unknown"] {
            let (_, colour) = outcome_style(outcome);
            let ratio = contrast_with_white(colour);
            assert!(ratio >= 7.0, "{outcome}: {colour} has {ratio:.2}:1");
        }
        // Every colour of the style sheet too.
        let css = include_str!("page.css");
        for (at, _) in css.match_indices('#').filter(|(at, _)| {
            css[at + 1..].len() >= 6 && css[at + 1..at + 7].bytes().all(|b| b.is_ascii_hexdigit())
        }) {
            let colour = &css[at..at + 7];
            let light = ["#ffffff", "#f6f8fa", "#eaeef2", "#d0d7de"].contains(&colour);
            if !light {
                let ratio = contrast_with_white(colour);
                assert!(ratio >= 7.0, "page.css: {colour} has {ratio:.2}:1");
            }
        }
    }
}
