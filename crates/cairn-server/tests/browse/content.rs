//! `GET /api/v1/files/content`: a download by default, a safe preview with `inline=1`,
//! and never anything that can run in Cairn's origin.

use reqwest::StatusCode;

use crate::support::{put_file_as, TestServer};

const CSP: &str = "default-src 'none'; sandbox";

async fn get(s: &TestServer, query: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = s
        .http
        .get(s.url(&format!("/api/v1/files/content?{query}")))
        .bearer_auth(&s.token);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    req.send().await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
}

on_each_backend!(content_is_a_download_or_a_safe_preview, |s| {
    let token = s.token.clone();
    let html = b"<script>alert(document.cookie)</script>";
    for path in [
        "/p/page.html",
        "/p/logo.svg",
        "/p/photo.JPG",
        "/p/clip.mp4",
        "/p/doc.pdf",
        "/p/notes.md",
        "/p/tool.exe",
        "/p/say \"hi\"; été\\now.txt",
    ] {
        put_file_as(&s, &token, path, html).await;
    }

    // By default every file is a download, whatever it is, with its exact name.
    let resp = get(&s, "path=/p/page.html", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");
    assert_eq!(
        header(&resp, "content-disposition"),
        "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    );
    assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
    assert_eq!(header(&resp, "content-security-policy"), CSP);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), html);

    // A name with quotes, a backslash, a semicolon and accents (percent-encoded in the
    // query) is exact in filename*, and harmless in the plain fallback. (A name cannot
    // hold a newline or another control character: paths refuse them.)
    let resp = get(
        &s,
        "path=/p/say%20%22hi%22%3B%20%C3%A9t%C3%A9%5Cnow.txt",
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "content-disposition"),
        "attachment; filename=\"say _hi_; _t__now.txt\"; \
         filename*=UTF-8''say%20%22hi%22%3B%20%C3%A9t%C3%A9%5Cnow.txt"
    );

    // A preview: media with their type, text of every kind as plain text, the rest
    // still a download; the sandbox always.
    for (path, kind, disposition) in [
        ("/p/page.html", "text/plain; charset=utf-8", "inline"),
        ("/p/notes.md", "text/plain; charset=utf-8", "inline"),
        ("/p/logo.svg", "image/svg+xml", "inline"),
        ("/p/photo.JPG", "image/jpeg", "inline"),
        ("/p/clip.mp4", "video/mp4", "inline"),
        ("/p/doc.pdf", "application/pdf", "inline"),
        ("/p/tool.exe", "application/octet-stream", "attachment"),
    ] {
        let resp = get(&s, &format!("path={path}&inline=1"), None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&resp, "content-type"), kind, "{path}");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(
            header(&resp, "content-disposition"),
            format!("{disposition}; filename=\"{name}\"; filename*=UTF-8''{name}"),
            "{path}"
        );
        assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
        assert_eq!(header(&resp, "content-security-policy"), CSP, "{path}");
    }
    let resp = get(&s, "path=/p/page.html&inline=0", None).await;
    assert_eq!(header(&resp, "content-type"), "application/octet-stream");

    // Ranges still work in a preview (audio and video seek with them).
    let resp = get(&s, "path=/p/clip.mp4&inline=1", Some("bytes=1-6")).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&resp, "content-type"), "video/mp4");
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes 1-6/{}", html.len())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &html[1..7]);

    let resp = get(&s, "path=/p/page.html&inline=2", None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
});
