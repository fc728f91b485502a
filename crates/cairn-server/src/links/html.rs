//! The public link pages: small, plain HTML with no script, every name escaped.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::display::human_size;
use cairn_meta::{Entry, EntryKind};

/// A rendered page with its status.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub html: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.html).into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        harden(h);
        response
    }
}

/// Headers every public response carries: nothing cached, no token leaked through the
/// Referer, no script, no framing, no content sniffing.
pub fn harden(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// `s` safe to put in HTML text and in quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query value or a header's `filename*`: everything but
/// RFC 3986's unreserved characters and '/'.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.4rem;word-break:break-all}table{border-collapse:\
collapse;width:100%}td{padding:.3rem .5rem;border-bottom:1px solid #eee}td.size{text-align:\
right;white-space:nowrap;color:#666}a.button,button{display:inline-block;padding:.5rem 1rem;\
background:#2b6cb0;color:#fff;border:0;border-radius:4px;text-decoration:none;font-size:1rem}\
.muted{color:#666}.error{color:#b00}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{} – Cairn</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        esc(title)
    )
}

fn page(status: StatusCode, title: &str, body: &str) -> Page {
    Page {
        status,
        html: layout(title, body),
    }
}

/// The one answer for every link that does not work (unknown, revoked, expired, out of
/// downloads, target gone, creator no longer allowed) and for every path inside a link
/// that is not there: always these bytes, so links cannot be told apart by probing.
pub fn not_found() -> Page {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<h1>Not found</h1>\n<p>This link does not exist or no longer works.</p>",
    )
}

/// Too many wrong passwords.
pub fn throttled(window_secs: u64) -> Page {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "<h1>Too many attempts</h1>\n<p>Too many wrong passwords were given for this \
             link. Wait {window_secs} seconds and try again.</p>"
        ),
    )
}

/// The password form; `wrong` after a wrong password (403), else 401.
pub fn password_form(token: &str, wrong: bool) -> Page {
    let (status, note) = if wrong {
        (
            StatusCode::FORBIDDEN,
            "<p class=\"error\">Wrong password. Try again.</p>\n",
        )
    } else {
        (StatusCode::UNAUTHORIZED, "")
    };
    page(
        status,
        "Password required",
        &format!(
            "<h1>Password required</h1>\n{note}<p>This link is protected by a password.</p>\n\
             <form method=\"post\" action=\"/s/{token}\">\
             <p><input type=\"password\" name=\"password\" autofocus required \
             autocomplete=\"current-password\" aria-label=\"Password\"> \
             <button type=\"submit\">Open</button></p></form>"
        ),
    )
}

/// A refusal with a message for the visitor (the server's internals never appear).
pub fn error(status: StatusCode, message: &str) -> Page {
    page(
        status,
        "Cannot do that",
        &format!("<h1>Cannot do that</h1>\n<p>{}</p>", esc(message)),
    )
}

/// A file link's page.
pub fn file(token: &str, entry: &Entry) -> Page {
    let name = entry.path.name().unwrap_or("file");
    page(
        StatusCode::OK,
        name,
        &format!(
            "<h1>{}</h1>\n<p class=\"muted\">{}</p>\n\
             <p><a class=\"button\" href=\"/s/{token}/download\">Download</a></p>",
            esc(name),
            human_size(entry.size.max(0) as u64)
        ),
    )
}

/// A folder link's page at `sub` (a path inside the link): its children, a link up,
/// and the whole folder as a zip. `more` when the listing was cut short.
pub fn folder(token: &str, title: &str, sub: &str, children: &[Entry], more: bool) -> Page {
    let mut body = format!("<h1>{}</h1>\n", esc(title));
    if sub != "/" {
        let parent = match sub.rfind('/') {
            Some(0) | None => "/",
            Some(i) => &sub[..i],
        };
        body.push_str(&format!(
            "<p class=\"muted\">{} · <a href=\"/s/{token}?path={}\">up</a></p>\n",
            esc(sub),
            pct(parent)
        ));
    }
    body.push_str(&format!(
        "<p><a class=\"button\" href=\"/s/{token}/zip?path={}\">Download all (zip)</a></p>\n",
        pct(sub)
    ));
    if children.is_empty() {
        body.push_str("<p class=\"muted\">This folder is empty.</p>\n");
    } else {
        body.push_str("<table>\n");
        for child in children {
            let name = child.path.name().unwrap_or("");
            let inner = if sub == "/" {
                format!("/{name}")
            } else {
                format!("{sub}/{name}")
            };
            let row = match child.kind {
                EntryKind::Folder => format!(
                    "<tr><td><a href=\"/s/{token}?path={}\">{}/</a></td><td class=\"size\">\
                     </td></tr>\n",
                    pct(&inner),
                    esc(name)
                ),
                EntryKind::File => format!(
                    "<tr><td><a href=\"/s/{token}/download?path={}\">{}</a></td>\
                     <td class=\"size\">{}</td></tr>\n",
                    pct(&inner),
                    esc(name),
                    human_size(child.size.max(0) as u64)
                ),
            };
            body.push_str(&row);
        }
        body.push_str("</table>\n");
    }
    if more {
        body.push_str(
            "<p class=\"muted\">Only the first entries are shown; the zip holds them all.</p>\n",
        );
    }
    page(StatusCode::OK, title, &body)
}

/// A file drop's page: an upload form and nothing of what the folder holds. `received`
/// names what was just uploaded.
pub fn drop_form(token: &str, received: &[(String, u64)]) -> Page {
    let mut body = String::from("<h1>Upload files</h1>\n");
    if !received.is_empty() {
        body.push_str("<p>Received, thank you:</p>\n<ul>\n");
        for (name, size) in received {
            body.push_str(&format!(
                "<li>{} <span class=\"muted\">({})</span></li>\n",
                esc(name),
                human_size(*size)
            ));
        }
        body.push_str("</ul>\n");
    }
    body.push_str(&format!(
        "<p>Files you upload here go to the owner of this link. You cannot see what is \
         already there.</p>\n\
         <form method=\"post\" action=\"/s/{token}/upload\" enctype=\"multipart/form-data\">\
         <p><input type=\"file\" name=\"file\" multiple required aria-label=\"Files\"></p>\
         <p><button type=\"submit\">Upload</button></p></form>"
    ));
    page(StatusCode::OK, "Upload files", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(pct("/a b/ü&x=1"), "/a%20b/%C3%BC%26x%3D1");
        assert_eq!(human_size(1536), "1.5 KiB");
    }

    #[test]
    fn the_not_found_page_never_varies() {
        let a = not_found();
        let b = not_found();
        assert_eq!((a.status, a.html), (b.status, b.html));
    }
}
