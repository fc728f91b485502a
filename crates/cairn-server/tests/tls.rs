//! HTTPS served by `cairn serve` itself: with a certificate and key in the
//! configuration, the server speaks only TLS, browser sessions get `Secure` cookies, a
//! client that does not trust the certificate is refused, and files that cannot be used
//! stop the start with a message naming them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_server::config::TlsFiles;
use cairn_server::{Application, Config};
use rcgen::{CertificateParams, KeyPair, SanType};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// A self-signed certificate for `localhost` and 127.0.0.1: its PEM and its key's.
fn certificate() -> (String, String) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config(dir: &Path, cert: PathBuf, key: PathBuf) -> Config {
    let mut config = Config::for_data_dir(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.argon2_memory_kib = 64;
    config.argon2_iterations = 1;
    config.maintenance.scrub_bytes_per_sec = 0;
    config.tls = Some(TlsFiles { cert, key });
    config
}

#[tokio::test]
async fn https_is_served_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let config = config(
        dir.path(),
        write(dir.path(), "cert.pem", &cert),
        write(dir.path(), "key.pem", &key),
    );
    let app = Application::build(config.clone()).await.unwrap();
    assert_eq!(app.scheme(), "https");
    let hash = cairn_server::hash_password(&config, PASSWORD.to_owned())
        .await
        .unwrap();
    app.state()
        .meta
        .create_user("bob", &hash, false, None)
        .await
        .unwrap();
    let port = app.local_addr().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let resp = trusting
            .get(format!("https://{host}:{port}/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }

    // Served over HTTPS, a browser session's cookie is Secure, whatever the client
    // claims in X-Forwarded-Proto.
    let resp = trusting
        .post(format!("https://127.0.0.1:{port}/api/v1/auth/session"))
        .header("x-forwarded-proto", "http")
        .json(&json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A client that does not trust the certificate is refused, and so is plain HTTP.
    let untrusting = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = untrusting
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let plain = untrusting
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP got an answer: {plain:?}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn files_that_cannot_be_used_stop_the_start_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate();
    let (_, other_key) = certificate();
    let cert_path = write(dir.path(), "cert.pem", &cert);
    let key_path = write(dir.path(), "key.pem", &key);
    let cases = [
        (
            dir.path().join("missing.pem"),
            key_path.clone(),
            "missing.pem",
        ),
        (
            write(dir.path(), "garbage.pem", "not a certificate\n"),
            key_path.clone(),
            "garbage.pem",
        ),
        (cert_path.clone(), cert_path.clone(), "cert.pem"),
        (
            cert_path.clone(),
            write(dir.path(), "other-key.pem", &other_key),
            "does not fit",
        ),
    ];
    for (cert, key, expected) in cases {
        let err = Application::build(config(dir.path(), cert.clone(), key.clone()))
            .await
            .unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains(expected),
            "{cert:?} with {key:?}: {message}"
        );
    }
}

#[test]
fn one_of_the_two_files_alone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "cairn.toml",
        "tls_cert = \"/etc/cairn/cert.pem\"\n",
    );
    let err = Config::load(dir.path(), Some(&file)).unwrap_err();
    assert!(err.to_string().contains("tls_key"), "{err}");
    let file = write(
        dir.path(),
        "cairn.toml",
        "tls_cert = \"/etc/cairn/cert.pem\"\ntls_key = \"/etc/cairn/key.pem\"\n",
    );
    let config = Config::load(dir.path(), Some(&file)).unwrap();
    assert_eq!(
        config.tls,
        Some(TlsFiles {
            cert: "/etc/cairn/cert.pem".into(),
            key: "/etc/cairn/key.pem".into(),
        })
    );
}
