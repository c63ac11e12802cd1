//! A minimal CalDAV (RFC 4791) client: `PUT` one calendar object resource
//! per event into a collection, creating the collection with `MKCALENDAR`
//! when the server says it does not exist.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Client, Method, StatusCode, Url};

/// What a `PUT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// The resource is new: a conditional `PUT` (`If-None-Match: *`) went through.
    Created,
    /// The resource was replaced.
    Updated,
}

/// Why a `PUT` failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PutError {
    /// The server cannot be used for the rest of the run (unreachable,
    /// timing out, refusing the credentials, or the collection cannot be
    /// created).
    Target(String),
    /// This event was refused; others may go through.
    Event(String),
}

/// The client for one collection.
pub(super) struct CalDav {
    client: Client,
    collection: Url,
    auth: Option<(String, String)>,
    timeout: Duration,
    /// `MKCALENDAR` is tried at most once a run.
    mkcalendar_tried: bool,
}

/// The body of `MKCALENDAR`: a display name and VEVENT support.
const MKCALENDAR_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:set>
    <D:prop>
      <D:displayname>Releases</D:displayname>
      <C:supported-calendar-component-set>
        <C:comp name="VEVENT"/>
      </C:supported-calendar-component-set>
    </D:prop>
  </D:set>
</C:mkcalendar>
"#;

/// `url` without user name or password, for messages.
pub(super) fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

impl CalDav {
    /// A client for `collection` (ending in `/`).
    pub(super) fn new(
        client: Client,
        collection: Url,
        auth: Option<(String, String)>,
        timeout: Duration,
    ) -> CalDav {
        CalDav {
            client,
            collection,
            auth,
            timeout,
            mkcalendar_tried: false,
        }
    }

    /// The collection's URL.
    pub(super) fn collection(&self) -> &Url {
        &self.collection
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url).timeout(self.timeout);
        match &self.auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// Writes `body` (a `VCALENDAR`) as `<collection>/<name>`.
    ///
    /// With `new` (the job has no record of the event) the first `PUT` is
    /// conditional (`If-None-Match: *`), so the answer says whether the
    /// server already had it: some servers (radicale) answer `201 Created`
    /// to every `PUT`, replacements included. Without `new`, one plain
    /// `PUT` replaces the event and counts as an update.
    pub(super) async fn put(
        &mut self,
        name: &str,
        body: &str,
        new: bool,
    ) -> Result<Written, PutError> {
        let url = self
            .collection
            .join(name)
            .map_err(|e| PutError::Event(format!("invalid resource name {name:?}: {e}")))?;
        let mut only_if_new = new;
        loop {
            let mut request = self
                .request(Method::PUT, url.clone())
                .header(CONTENT_TYPE, "text/calendar; charset=utf-8")
                .body(body.to_owned());
            if only_if_new {
                request = request.header(IF_NONE_MATCH, "*");
            }
            let response = request
                .send()
                .await
                .map_err(|e| PutError::Target(describe(&e, &url)))?;
            let status = response.status();
            let text = if status.is_success() {
                String::new()
            } else {
                response.text().await.unwrap_or_default()
            };
            match status {
                s if s.is_success() && only_if_new => return Ok(Written::Created),
                s if s.is_success() => return Ok(Written::Updated),
                StatusCode::PRECONDITION_FAILED if only_if_new => {
                    // It exists: replace it.
                    only_if_new = false;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(PutError::Target(format!(
                        "PUT {}: HTTP {status}: check username_env and password_env",
                        shown(&url)
                    )));
                }
                // Another resource of the collection has this UID.
                StatusCode::CONFLICT if text.contains("no-uid-conflict") => {
                    return Err(PutError::Event(format!(
                        "PUT {}: HTTP {status}: another event of the collection has this UID",
                        shown(&url)
                    )));
                }
                StatusCode::NOT_FOUND | StatusCode::CONFLICT if !self.mkcalendar_tried => {
                    self.mkcalendar_tried = true;
                    self.mkcalendar().await?;
                }
                StatusCode::NOT_FOUND | StatusCode::CONFLICT => {
                    return Err(PutError::Target(format!(
                        "PUT {}: HTTP {status}: the collection is missing{}",
                        shown(&url),
                        excerpt(&text)
                    )));
                }
                _ => {
                    return Err(PutError::Event(format!(
                        "PUT {}: HTTP {status}{}",
                        shown(&url),
                        excerpt(&text)
                    )));
                }
            }
        }
    }

    /// Creates the collection.
    async fn mkcalendar(&self) -> Result<(), PutError> {
        let method = Method::from_bytes(b"MKCALENDAR")
            .map_err(|e| PutError::Target(format!("MKCALENDAR: {e}")))?;
        let response = self
            .request(method, self.collection.clone())
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(MKCALENDAR_BODY)
            .send()
            .await
            .map_err(|e| PutError::Target(describe(&e, &self.collection)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(PutError::Target(format!(
                "the collection does not exist and MKCALENDAR {} answered HTTP {status}{}",
                shown(&self.collection),
                excerpt(&text)
            )))
        }
    }
}

/// A request error in words, naming the URL (without credentials).
fn describe(e: &reqwest::Error, url: &Url) -> String {
    let kind = crate::settings::failure_kind(e);
    let mut text = format!("{kind}: {}", shown(url));
    crate::settings::push_causes(&mut text, &e);
    text
}

/// `: <the start of text>` when there is any.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let short: String = text.chars().take(200).collect();
    format!(": {}", short.replace(['\n', '\r'], " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_hides_credentials() {
        let url = Url::parse("https://me:secret@dav.example/u/releases/").unwrap();
        assert_eq!(shown(&url), "https://dav.example/u/releases/");
    }
}
