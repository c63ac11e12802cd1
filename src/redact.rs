//! Hiding credentials in the URLs pushguard prints: one place for every
//! message that shows a gateway or database URL.

/// `url` with anything between the scheme and an `@` in the authority
/// replaced by `***`, for messages.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(feature = "state")]
/// `url` with the password (in the user info or a `password=` parameter)
/// replaced by `***`, for messages.
pub(crate) fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut masked = url[..scheme_end].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let user_info = &authority[..at];
            match user_info.find(':') {
                Some(colon) => {
                    masked.push_str(&user_info[..colon]);
                    masked.push_str(":***");
                }
                None => masked.push_str(user_info),
            }
            masked.push_str(&authority[at..]);
        }
        None => masked.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            masked.push_str(path);
            masked.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            masked.push_str(&params.join("&"));
        }
        None => masked.push_str(tail),
    }
    masked
}
