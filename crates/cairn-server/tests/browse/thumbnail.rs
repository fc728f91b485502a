//! `GET /api/v1/files/thumbnail`: made once per version and size, cached, revalidated
//! with its ETag, and collected with its version.

use std::io::Cursor;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{block_ref, put_file_as, TestServer};

fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Vec::new();
    picture
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

async fn thumb(s: &TestServer, query: &str, etag: Option<&str>) -> reqwest::Response {
    let mut req = s
        .http
        .get(s.url(&format!("/api/v1/files/thumbnail?{query}")))
        .bearer_auth(&s.token);
    if let Some(etag) = etag {
        req = req.header("if-none-match", etag);
    }
    req.send().await.unwrap()
}

/// The cached thumbnail files under the data directory.
fn cached(s: &TestServer) -> Vec<std::path::PathBuf> {
    let dir = s.data.path().join("thumbnails");
    let mut out = Vec::new();
    for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(folder.path()).unwrap().flatten() {
            out.push(file.path());
        }
    }
    out.sort();
    out
}

on_each_backend!(thumbnails_are_made_cached_and_collected, |s| {
    let token = s.token.clone();
    let first_version = put_file_as(&s, &token, "/pics/wide.png", &png(800, 400)).await;
    put_file_as(&s, &token, "/pics/small.png", &png(30, 20)).await;
    put_file_as(&s, &token, "/pics/notes.txt", b"just text").await;
    put_file_as(&s, &token, "/pics/fake.png", b"not a png at all").await;

    // Made at the size asked for, aspect kept, as a JPEG.
    let resp = thumb(&s, "path=/pics/wide.png&size=256", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let cache_control = resp.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(
        cache_control.starts_with("private, max-age="),
        "{cache_control}"
    );
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let first = resp.bytes().await.unwrap();
    let picture = image::load_from_memory_with_format(&first, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((picture.width(), picture.height()), (256, 128));
    assert_eq!(cached(&s).len(), 1);

    // Again: from the cache (the same bytes, the cached file untouched), and 304 with
    // the ETag.
    let modified = std::fs::metadata(&cached(&s)[0])
        .unwrap()
        .modified()
        .unwrap();
    let resp = thumb(&s, "path=/pics/wide.png&size=256", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), first);
    assert_eq!(
        std::fs::metadata(&cached(&s)[0])
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );
    let resp = thumb(&s, "path=/pics/wide.png&size=256", Some(&etag)).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);

    // The default size is 256; another size is another thumbnail; small pictures are
    // never scaled up.
    let resp = thumb(&s, "path=/pics/wide.png", Some(&etag)).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = thumb(&s, "path=/pics/wide.png&size=64", None).await;
    let small = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (64, 32));
    let resp = thumb(&s, "path=/pics/small.png&size=1024", None).await;
    let same = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((same.width(), same.height()), (30, 20));
    assert_eq!(cached(&s).len(), 3);

    // What is no picture gets a clear 415; bad sizes and missing files their errors.
    for (query, status, code) in [
        (
            "path=/pics/notes.txt",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_an_image",
        ),
        (
            "path=/pics/fake.png",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_an_image",
        ),
        (
            "path=/pics/wide.png&size=100",
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        ("path=/pics/none.png", StatusCode::NOT_FOUND, "not_found"),
        ("path=/pics", StatusCode::CONFLICT, "is_a_folder"),
    ] {
        let resp = thumb(&s, query, None).await;
        assert_eq!(resp.status(), status, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }

    // A new version is a new thumbnail; purging the file from the trash takes its
    // versions, and the next maintenance pass their thumbnails.
    let tall = png(300, 600);
    let (status, body) = s.put_block_as(&token, &tall).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .commit(json!({
            "path": "/pics/wide.png",
            "blocks": [block_ref(&tall)],
            "base_rev": first_version["entry"]["rev"],
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp = thumb(&s, "path=/pics/wide.png&size=256", Some(&etag)).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a new version does not match the old ETag"
    );
    let tall = image::load_from_memory(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!((tall.width(), tall.height()), (128, 256));
    assert_eq!(cached(&s).len(), 4);
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/files/delete",
            Some(json!({"path": "/pics/wide.png"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = s
        .call(
            Method::POST,
            "/api/v1/trash/purge",
            Some(json!({"path": "/pics/wide.png"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let report = cairn_server::maintenance::run_once(
        &s.state.meta,
        &s.state.blocks,
        &s.state.thumbnails,
        &s.config().maintenance,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(report.thumbnails_deleted, 3);
    let left = cached(&s);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].to_str().unwrap().ends_with("-1024.jpg"), "{left:?}");
});
