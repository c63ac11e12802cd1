//! Local stand-ins for AniList's GraphQL API and RSS/Atom release feeds.
//!
//! One small HTTP/1.1 server on a free loopback port (one request per
//! connection, answered from a thread). `/graphql` speaks AniList's request
//! and response shape: it checks that a request is a JSON `POST` of `query`
//! and `variables`, answers `{"data":{"Page":…}}` pages of its fixture
//! data with `pageInfo.hasNextPage`, and answers what the GraphQL API does
//! to a bad request (HTTP 400 with an `errors` array, also for a variable
//! that does not fit GraphQL's 32-bit `Int`). With a [`RateLimit`] it
//! counts requests per window as AniList does: `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset` on every answer, and a
//! 429 with `Retry-After` past the limit. Every other path
//! serves what the test put there: a feed, an error status, a 429 with
//! `Retry-After`, or a connection that never answers. Faults can be queued
//! for the next requests of a path, after which it answers normally again.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::harness::{Listener, Request, read_request_from, respond};

/// The path of the AniList stand-in.
pub const GRAPHQL: &str = "/graphql";

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this content type and body.
    Body(&'static str, String),
    /// This status with a plain-text body.
    Status(u16, &'static str),
    /// 429 with `Retry-After: <seconds>` and AniList's error body.
    TooMany(u64),
    /// 200 with a GraphQL `errors` array holding this message and no data.
    GraphqlError(&'static str),
    /// Reads the request and never answers (until the server is dropped).
    Hang,
}

/// One request the server read.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// When the request was read.
    pub at: SystemTime,
    /// The status it was answered with (0 for none).
    pub status: u16,
}

impl Recorded {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The AniList fixture: what `/graphql` pages through.
#[derive(Debug, Clone, Default)]
pub struct AniList {
    /// `airingSchedules` items.
    pub airing: Vec<Value>,
    /// `media` items (manga).
    pub manga: Vec<Value>,
    /// The largest page the server sends, whatever `perPage` asks.
    pub page_cap: usize,
    /// AniList's rate limit, when the test wants one.
    pub rate_limit: Option<RateLimit>,
}

/// Requests allowed per window on `/graphql`: a window opens with the first
/// request after the last one closed and lasts `window_secs` to the next
/// whole second after that.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub limit: u32,
    pub window_secs: u64,
}

#[derive(Default)]
struct Shared {
    anilist: Mutex<AniList>,
    /// Standing answers by path.
    routes: Mutex<HashMap<String, Reply>>,
    /// Faults answered before the standing answer, by path.
    queued: Mutex<HashMap<String, VecDeque<Reply>>>,
    log: Mutex<Vec<Recorded>>,
    /// The rate limit's current window: its end (Unix seconds) and count.
    window: Mutex<(u64, u32)>,
    held: Mutex<Vec<TcpStream>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server.
pub struct Sources {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    shared: Arc<Shared>,
    _listener: Listener,
}

impl Sources {
    /// Starts a server with the standard AniList fixture (see [`anilist_fixture`]).
    pub fn start() -> Sources {
        let shared = Arc::new(Shared::default());
        *lock(&shared.anilist) = anilist_fixture();
        let serving = shared.clone();
        let listener = Listener::start(move |stream| {
            let _ = serve(stream, &serving);
        });
        Sources {
            base: listener.url.clone(),
            shared,
            _listener: listener,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The `[[settings.sources]]` of a fetch job file reading this server:
    /// AniList for `media`, then one manga feed per (name, path).
    pub fn job_sources(&self, media: &[&str], feeds: &[(&str, &str)]) -> String {
        let media: Vec<String> = media.iter().map(|m| format!("{m:?}")).collect();
        let mut text = format!(
            "[[settings.sources]]\nname = \"anilist\"\ntype = \"anilist\"\nendpoint = \"{}\"\nmedia = [{}]\n",
            self.url(GRAPHQL),
            media.join(", ")
        );
        for (name, path) in feeds {
            text.push_str(&format!(
                "[[settings.sources]]\nname = \"{name}\"\ntype = \"feed\"\nurl = \"{}\"\nkind = \"manga\"\n",
                self.url(path)
            ));
        }
        text
    }

    /// Replaces the AniList fixture.
    pub fn set_anilist(&self, data: AniList) {
        *lock(&self.shared.anilist) = data;
    }

    /// Serves `reply` on `path` from now on.
    pub fn route(&self, path: &str, reply: Reply) {
        lock(&self.shared.routes).insert(path.to_owned(), reply);
    }

    /// Serves an RSS 2.0 document on `path`.
    pub fn rss(&self, path: &str, body: &str) {
        self.route(
            path,
            Reply::Body("application/rss+xml; charset=utf-8", body.to_owned()),
        );
    }

    /// Serves an Atom document on `path`.
    pub fn atom(&self, path: &str, body: &str) {
        self.route(
            path,
            Reply::Body("application/atom+xml; charset=utf-8", body.to_owned()),
        );
    }

    /// Answers the next request of `path` with `reply`, before anything
    /// queued later and before the standing answer.
    pub fn queue(&self, path: &str, reply: Reply) {
        lock(&self.shared.queued)
            .entry(path.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Every request read so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).clone()
    }

    /// How many requests `path` received.
    pub fn count(&self, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for stream in lock(&self.shared.held).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some(request) = read_request_from(&stream)? else {
        return Ok(());
    };
    let content_type = request.header("content-type").map(str::to_owned);
    let Request {
        method, path, body, ..
    } = request;
    let recorded = Recorded {
        method,
        path: path.clone(),
        content_type,
        body,
        at: SystemTime::now(),
        status: 0,
    };
    let index = {
        let mut log = lock(&shared.log);
        log.push(recorded.clone());
        log.len() - 1
    };
    let answered = |status: u16| {
        if let Some(r) = lock(&shared.log).get_mut(index) {
            r.status = status;
        }
    };

    // AniList's rate limit comes before anything else it answers.
    let limit = if path == GRAPHQL {
        lock(&shared.anilist).rate_limit
    } else {
        None
    };
    let mut limit_headers = String::new();
    if let Some(limit) = limit {
        let now = unix(recorded.at);
        let mut window = lock(&shared.window);
        if now >= window.0 {
            // From this request on, at least `window_secs`, ending at a
            // whole second (the reset header has no fraction).
            *window = (now + limit.window_secs + 1, 0);
        }
        window.1 += 1;
        let (reset, count) = *window;
        drop(window);
        let remaining = limit.limit.saturating_sub(count);
        limit_headers = format!(
            "X-RateLimit-Limit: {}\r\nX-RateLimit-Remaining: {remaining}\r\nX-RateLimit-Reset: {reset}\r\n",
            limit.limit
        );
        if count > limit.limit {
            answered(429);
            let headers = format!("{limit_headers}Retry-After: {}\r\n", reset - now);
            let body = graphql_error("Too Many Requests.", 429).to_string();
            return respond(
                &mut stream,
                429,
                "application/json",
                &headers,
                body.as_bytes(),
            );
        }
    }

    let queued = lock(&shared.queued)
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let reply = queued.or_else(|| lock(&shared.routes).get(&path).cloned());
    let (status, headers, content_type, body) = match reply {
        Some(Reply::Hang) => {
            lock(&shared.held).push(stream);
            return Ok(());
        }
        Some(Reply::Body(ct, body)) => (200, String::new(), ct, body),
        Some(Reply::Status(status, body)) => (status, String::new(), "text/plain", body.into()),
        Some(Reply::TooMany(seconds)) => (
            429,
            format!("Retry-After: {seconds}\r\n"),
            "application/json",
            graphql_error("Too Many Requests.", 429).to_string(),
        ),
        Some(Reply::GraphqlError(message)) => (
            200,
            String::new(),
            "application/json",
            graphql_error(message, 400).to_string(),
        ),
        None if path == GRAPHQL => {
            let (status, body) = anilist(&lock(&shared.anilist), &recorded);
            (status, String::new(), "application/json", body.to_string())
        }
        None => (404, String::new(), "text/plain", "Not Found".into()),
    };
    answered(status);
    let headers = format!("{limit_headers}{headers}");
    respond(&mut stream, status, content_type, &headers, body.as_bytes())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// AniList's error body.
pub fn graphql_error(message: &str, status: u16) -> Value {
    json!({
        "errors": [{ "message": message, "status": status, "locations": [{ "line": 1, "column": 1 }] }],
        "data": null
    })
}

/// Answers one GraphQL request from the fixture, as AniList would.
fn anilist(data: &AniList, request: &Recorded) -> (u16, Value) {
    let bad = |message: &str| (400, graphql_error(message, 400));
    if request.method != "POST" {
        return bad("Only POST requests are accepted.");
    }
    if !request
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        return bad("Content-Type must be application/json.");
    }
    let json = request.json();
    let (Some(query), Some(variables)) = (
        json.get("query").and_then(Value::as_str),
        json.get("variables").and_then(Value::as_object),
    ) else {
        return bad("Request body must be a JSON object with query and variables.");
    };
    // Every variable the queries declare is an `Int`: 32-bit in GraphQL.
    for (name, value) in variables {
        if value.is_number() && value.as_i64().and_then(|v| i32::try_from(v).ok()).is_none() {
            return bad(&format!(
                "Variable \"${name}\" got invalid value {value}; Int cannot represent non 32-bit signed integer value: {value}"
            ));
        }
    }
    if !query.contains("Page(") || !query.contains("pageInfo") {
        return bad("Query must select a Page with pageInfo.");
    }
    let (field, items) = if query.contains("airingSchedules(") {
        if !query.contains("airingAt_greater") || !query.contains("airingAt_lesser") {
            return bad("airingSchedules needs an airingAt window.");
        }
        ("airingSchedules", &data.airing)
    } else if query.contains("media(") && query.contains("MANGA") {
        ("media", &data.manga)
    } else {
        return bad("Unknown query.");
    };
    let page = variables.get("page").and_then(Value::as_u64).unwrap_or(1) as usize;
    let per_page = variables
        .get("perPage")
        .and_then(Value::as_u64)
        .unwrap_or(50) as usize;
    let size = per_page.min(data.page_cap.max(1));
    let start = (page.max(1) - 1) * size;
    let chunk: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
    let has_next = start + size < items.len();
    (
        200,
        json!({ "data": { "Page": {
            "pageInfo": { "hasNextPage": has_next, "currentPage": page, "perPage": size },
            field: chunk,
        } } }),
    )
}

fn media(id: u64, kind: &str, romaji: &str, english: Option<&str>, native: &str) -> Value {
    json!({
        "id": id,
        "type": kind,
        "siteUrl": format!("https://anilist.co/{}/{id}", kind.to_lowercase()),
        "title": { "romaji": romaji, "english": english, "native": native },
    })
}

/// Now, as Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Three anime with five episodes airing in the coming days, and three
/// manga (two releasing, one announced for two years ahead), served two
/// items a page.
pub fn anilist_fixture() -> AniList {
    let frieren = media(
        154587,
        "ANIME",
        "Sousou no Frieren",
        Some("Frieren: Beyond Journey's End"),
        "葬送のフリーレン",
    );
    let dandadan = media(
        171018,
        "ANIME",
        "Dandadan",
        Some("DAN DA DAN"),
        "ダンダダン",
    );
    let kusuriya = media(
        161645,
        "ANIME",
        "Kusuriya no Hitorigoto",
        None,
        "薬屋のひとりごと",
    );
    let at = now() + 3600;
    let airing = |id: u64, episode: u32, hours: i64, media: &Value| json!({ "id": id, "episode": episode, "airingAt": at + hours * 3600, "media": media });
    let manga = |m: Value, status: &str, volumes: Option<u32>, start: Value| {
        let mut m = m;
        m["status"] = json!(status);
        m["volumes"] = json!(volumes);
        m["chapters"] = Value::Null;
        m["startDate"] = start;
        m
    };
    // Two years ahead: past the calendar's 30-day window whatever today is.
    let ahead = 1970 + now() / 31_556_952 + 2;
    AniList {
        airing: vec![
            airing(9001, 27, 1, &frieren),
            airing(9002, 7, 5, &dandadan),
            airing(9003, 30, 20, &kusuriya),
            airing(9004, 28, 169, &frieren),
            airing(9005, 31, 188, &kusuriya),
        ],
        manga: vec![
            manga(
                media(30013, "MANGA", "ONE PIECE", Some("One Piece"), "ONE PIECE"),
                "RELEASING",
                None,
                json!({ "year": 1997, "month": 7, "day": 22 }),
            ),
            manga(
                media(
                    118586,
                    "MANGA",
                    "Sousou no Frieren",
                    Some("Frieren: Beyond Journey's End"),
                    "葬送のフリーレン",
                ),
                "RELEASING",
                Some(13),
                json!({ "year": 2020, "month": 4, "day": 28 }),
            ),
            manga(
                media(189999, "MANGA", "Mitei no Manga", None, "未定の漫画"),
                "NOT_YET_RELEASED",
                None,
                json!({ "year": ahead, "month": 4, "day": null }),
            ),
        ],
        page_cap: 2,
        rate_limit: None,
    }
}

/// A publisher's RSS 2.0 feed: three volumes of two English-titled series.
pub const RSS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom">
  <channel>
    <title>Kodansha USA — New Releases</title>
    <link>https://kodansha.us/new-releases/</link>
    <description>Manga volumes out this month</description>
    <language>en-us</language>
    <lastBuildDate>Tue, 04 Jun 2024 09:00:00 +0000</lastBuildDate>
    <atom:link href="https://kodansha.us/feed/releases.rss" rel="self" type="application/rss+xml"/>
    <item>
      <title>Blue Lock, Volume 25</title>
      <link>https://kodansha.us/volume/blue-lock-25/</link>
      <guid isPermaLink="false">kodansha-9781646516001</guid>
      <pubDate>Tue, 11 Jun 2024 04:00:00 +0000</pubDate>
      <description><![CDATA[<p>The U-20 match heats up.</p>]]></description>
    </item>
    <item>
      <title>Blue Lock, Volume 26</title>
      <link>https://kodansha.us/volume/blue-lock-26/</link>
      <guid isPermaLink="false">kodansha-9781646516018</guid>
      <pubDate>Tue, 09 Jul 2024 04:00:00 +0000</pubDate>
    </item>
    <item>
      <title>The Seven Deadly Sins: Four Knights of the Apocalypse Vol. 9</title>
      <link>https://kodansha.us/volume/four-knights-9/</link>
      <guid isPermaLink="false">kodansha-9781646519996</guid>
      <pubDate>Tue, 18 Jun 2024 04:00:00 +0000</pubDate>
    </item>
  </channel>
</rss>
"#;

/// A Japanese store's Atom feed: three volumes with Japanese titles.
pub const ATOM: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="ja">
  <title>新刊コミック</title>
  <id>urn:uuid:3b7e8a6e-2f0e-4c55-9d8a-6f0f3c1d2e11</id>
  <updated>2024-06-04T00:00:00+09:00</updated>
  <link rel="self" href="https://example.jp/comics/new.atom"/>
  <entry>
    <title>呪術廻戦 26巻</title>
    <id>tag:example.jp,2024:comic/4088839999</id>
    <link href="https://example.jp/comics/jujutsu-26"/>
    <published>2024-06-04T00:00:00+09:00</published>
    <updated>2024-06-03T12:00:00+09:00</updated>
  </entry>
  <entry>
    <title>葬送のフリーレン　１３巻</title>
    <id>tag:example.jp,2024:comic/4098532222</id>
    <link href="https://example.jp/comics/frieren-13"/>
    <updated>2024-06-18T00:00:00+09:00</updated>
  </entry>
  <entry>
    <title>ONE PIECE 第108巻</title>
    <id>tag:example.jp,2024:comic/4088840000</id>
    <link href="https://example.jp/comics/one-piece-108"/>
    <updated>2024-03-04T00:00:00+09:00</updated>
  </entry>
</feed>
"#;
