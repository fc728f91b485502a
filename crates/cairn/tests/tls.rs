//! The command-line client against `cairn serve` speaking HTTPS itself: a certificate
//! from a private CA is refused until `cairn login … --ca FILE` names the CA, which is
//! then kept with the login for every later command, a sync daemon's notifications
//! included.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use support::{Client, SyncProcess, ADMIN_PASSWORD, BIN};

/// A private CA and a server certificate it signed, for 127.0.0.1, written into `dir`:
/// the CA's PEM file and the server's certificate and key files.
fn private_ca(dir: &Path) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    (
        write("ca.pem", ca_cert.pem()),
        write("cert.pem", cert.pem()),
        write("key.pem", key.serialize_pem()),
    )
}

/// `cairn serve` over HTTPS with `cert` and `key`: the child and its base URL.
fn serve_tls(data: &Path, cert: &Path, key: &Path) -> (Child, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("CAIRN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CAIRN_TLS_CERT", cert)
        .env("CAIRN_TLS_KEY", key)
        .env("CAIRN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    support::spawn_serve(cmd)
}

#[test]
fn a_private_ca_is_trusted_once_named_at_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let (mut server, url) = serve_tls(data.path(), Path::new(&cert), Path::new(&key));
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let login = |client: &Client, extra: &[&str]| {
        let mut args = vec!["login", &url, "--user", "admin", "--password-stdin"];
        args.extend_from_slice(extra);
        client.run_with_stdin(&args, ADMIN_PASSWORD)
    };
    // Unknown to the system's roots: refused, saying why.
    let stranger = Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    let out = login(&stranger, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("invalid peer certificate") && stderr.contains("--ca CA.pem"),
        "{stderr}"
    );

    // Named at login, the CA is kept for the commands that follow.
    let (a, b) = (
        Client {
            config_dir: tempfile::tempdir().unwrap(),
        },
        Client {
            config_dir: tempfile::tempdir().unwrap(),
        },
    );
    for client in [&a, &b] {
        let out = login(client, &["--ca", &ca]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let synced = tempfile::tempdir().unwrap();
    let daemon = SyncProcess::start(&b, synced.path());
    let local = dir.path().join("hello.txt");
    fs::write(&local, "over TLS\n").unwrap();
    a.ok(&["put", local.to_str().unwrap(), "/hello.txt"]);
    assert!(a.ok(&["ls", "/"]).contains("hello.txt"));
    // The sync daemon hears of the new file (its notifications over wss://) and
    // fetches it.
    let arrived = support::wait_until(
        || fs::read_to_string(synced.path().join("hello.txt")).is_ok_and(|t| t == "over TLS\n"),
        Duration::from_secs(30),
    );
    daemon.stop();
    let _ = server.kill();
    let _ = server.wait();
    assert!(arrived, "the synced folder did not get the file");
}

#[test]
fn a_self_signed_server_certificate_named_at_login_is_trusted() {
    // As `openssl req -x509` makes it: self-signed, and marked a CA.
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    fs::write(&cert_path, cert.pem()).unwrap();
    fs::write(&key_path, key.serialize_pem()).unwrap();
    let (mut server, url) = serve_tls(data.path(), &cert_path, &key_path);
    let client = Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    let out = client.run_with_stdin(
        &[
            "login",
            &url,
            "--user",
            "admin",
            "--password-stdin",
            "--ca",
            cert_path.to_str().unwrap(),
        ],
        ADMIN_PASSWORD,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed = out.status.success().then(|| client.ok(&["ls", "/"]));
    let _ = server.kill();
    let _ = server.wait();
    assert!(listed.is_some(), "{stderr}");
}
