//! Several nodes: two `cairn serve` processes on one PostgreSQL database, one S3 bucket
//! (`.ci/s3-up.sh`) and one event bus (NATS at 127.0.0.1:4222, or PostgreSQL
//! LISTEN/NOTIFY), behind HAProxy on loopback, as an operator runs Cairn past one
//! machine.
//!
//! - two `cairn sync` daemons, one pinned to each node, converge in real time;
//! - the same file committed through both nodes at once leaves one winner and one
//!   conflict copy, nothing lost;
//! - a node killed with SIGKILL in the middle of a large upload through the balancer
//!   leaves the client to finish through the other node, bit-identical;
//! - a wrong password on node 1 counts toward the throttle on node 2.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{
    random_file, same_content, tree, wait_until, write, Client, Device, SyncProcess,
    ADMIN_PASSWORD, BIN,
};

/// A `cairn serve` node.
struct Node {
    child: Option<Child>,
    url: String,
    _data: tempfile::TempDir,
}

impl Node {
    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nodes, the balancer in front of them, and what they share.
struct Cluster {
    nodes: Vec<Node>,
    /// The balancer's URL.
    url: String,
    haproxy: Child,
    _haproxy_dir: tempfile::TempDir,
    schema: String,
    /// What every node's environment adds: the database, the bucket, the bus.
    env: Vec<(String, String)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn postgres_base() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(postgres_base())
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql (PostgreSQL's client) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Starts `count` nodes sharing a fresh PostgreSQL schema, a fresh S3 prefix and the
    /// bus `events_url`, and HAProxy in front of them.
    fn start(count: usize, events_url: &str) -> Cluster {
        let schema = format!("cairn_cluster_{:016x}", rand::random::<u64>());
        psql(&format!("CREATE SCHEMA {schema}"));
        let base = postgres_base();
        let sep = if base.contains('?') { '&' } else { '?' };
        let database = format!("{base}{sep}options[search_path]={schema}");
        let s3 = cairn_store::S3Config::for_tests(&format!("cluster-tests/{schema}"));
        let mut env = s3.to_env();
        env.push(("CAIRN_DATABASE_URL".into(), database));
        env.push(("CAIRN_EVENTS_URL".into(), events_url.into()));
        let mut nodes = Vec::new();
        for _ in 0..count {
            // One after the other: the first creates the admin account, the others
            // find it.
            let data = tempfile::tempdir().unwrap();
            let mut cmd = Command::new(BIN);
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data.path())
                .env("CAIRN_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("CAIRN_LOG", "warn")
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let (child, url) = support::spawn_serve(cmd);
            nodes.push(Node {
                child: Some(child),
                url,
                _data: data,
            });
        }
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let addr = n.url.trim_start_matches("http://");
                format!("    server node{i} {addr} check inter 200ms fall 1 rise 1\n")
            })
            .collect();
        // Round robin over the nodes; a request that cannot reach its node is sent to
        // another (redispatch); notification connections may stay open for an hour.
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 2s\n    timeout client 1h\n\
             \x20   timeout server 1h\n    timeout tunnel 1h\n    retries 3\n\
             \x20   option redispatch\n\
             frontend cairn\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\
             backend nodes\n    balance roundrobin\n    option httpchk GET /healthz\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let haproxy = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy must be installed (apt-get install haproxy)");
        let url = format!("http://127.0.0.1:{port}");
        assert!(
            wait_until(
                || {
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                        && support::http_fetch(&format!("{url}/healthz"), &[]).0 == 200
                },
                Duration::from_secs(20)
            ),
            "HAProxy did not answer on {url}"
        );
        Cluster {
            nodes,
            url,
            haproxy,
            _haproxy_dir: dir,
            schema,
            env,
        }
    }

    /// `cairn admin ARGS` as the operator runs it beside a node.
    fn admin(&self, args: &[&str], stdin: &str) {
        let data = self.nodes[0]._data.path();
        let mut child = Command::new(BIN)
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(data)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "cairn admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn finish(self) {
        let schema = self.schema.clone();
        drop(self);
        psql(&format!("DROP SCHEMA {schema} CASCADE"));
        let s3 = cairn_store::S3Config::for_tests(&format!("cluster-tests/{schema}"));
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(s3.delete_everything());
    }
}

fn device(url: &str, name: &str) -> Device {
    Device::at(url, "admin", name)
}

fn converge(
    a: &Path,
    b: &Path,
    check: impl Fn(&std::collections::BTreeMap<String, Option<blake3::Hash>>) -> bool,
) {
    let ok = wait_until(
        || {
            let ta = tree(a);
            ta == tree(b) && check(&ta)
        },
        Duration::from_secs(60),
    );
    assert!(
        ok,
        "the folders did not converge:\n{:#?}\n{:#?}",
        tree(a),
        tree(b)
    );
}

fn sync_pinned_to_each_node_converges_in_real_time(cluster: &Cluster) {
    let a = device(&cluster.nodes[0].url, "on-node-1");
    let b = device(&cluster.nodes[1].url, "on-node-2");
    std::fs::create_dir_all(&a.dir).unwrap();
    std::fs::create_dir_all(&b.dir).unwrap();
    let sync_a = SyncProcess::start(&a.client, &a.dir);
    let sync_b = SyncProcess::start(&b.client, &b.dir);
    // Both daemons idle and connected before the change is made.
    write(&a.dir.join("warm-up.txt"), "warm");
    converge(&a.dir, &b.dir, |t| t.contains_key("warm-up.txt"));

    // A change through node 1 reaches the daemon connected to node 2 by notification,
    // not by a periodic poll.
    let mut latencies = Vec::new();
    for i in 0..5 {
        let name = format!("note-{i}.txt");
        let started = Instant::now();
        write(
            &a.dir.join(&name),
            &format!("written on node 1, number {i}"),
        );
        assert!(
            wait_until(|| b.dir.join(&name).is_file(), Duration::from_secs(20)),
            "{name} did not reach the device on node 2"
        );
        latencies.push(started.elapsed());
    }
    eprintln!("node 1 → node 2, write to arrival: {latencies:?}");
    // And back.
    write(&b.dir.join("Reply/from-2.txt"), "written on node 2");
    converge(&a.dir, &b.dir, |t| t.contains_key("Reply/from-2.txt"));

    // The same file changed on both sides while the daemons are stopped, then both
    // started together: one version wins, the other is kept as a conflict copy.
    sync_a.stop();
    sync_b.stop();
    write(&a.dir.join("shared.txt"), "the version from node 1");
    write(&b.dir.join("shared.txt"), "the version from node 2, longer");
    let sync_a = SyncProcess::start(&a.client, &a.dir);
    let sync_b = SyncProcess::start(&b.client, &b.dir);
    converge(&a.dir, &b.dir, |t| {
        t.keys().filter(|k| k.starts_with("shared")).count() == 2
    });
    let mut contents: Vec<String> = std::fs::read_dir(&a.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("shared"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        vec!["the version from node 1", "the version from node 2, longer"],
        "one winner and one conflict copy, nothing lost"
    );
    sync_a.stop();
    sync_b.stop();
}

fn a_killed_node_leaves_the_upload_to_the_other(cluster: &mut Cluster) {
    let uploader = device(&cluster.url, "through-the-balancer");
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.bin");
    random_file(&big, 300 << 20, 16);
    let mut put = Command::new(BIN)
        .args(["put", big.to_str().unwrap(), "/big.bin"])
        .env("CAIRN_CONFIG_DIR", uploader.client.config_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill node 1 once the upload is well under way: some blocks are stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored_at_start = blocks_stored(cluster);
    while blocks_stored(cluster) < stored_at_start + 5.0 && Instant::now() < deadline {
        if put.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        put.try_wait().unwrap().is_none(),
        "the upload ended before node 1 was killed"
    );
    cluster.nodes[0].kill();
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the upload did not finish through node 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = scratch.path().join("back.bin");
    uploader
        .client
        .ok(&["get", "/big.bin", back.to_str().unwrap()]);
    assert!(same_content(&big, &back), "the file is not bit-identical");
}

/// Blocks stored, summed over the nodes still running.
fn blocks_stored(cluster: &Cluster) -> f64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| {
            let body = support::http_get(&format!("{}/metrics", n.url));
            body.lines()
                .filter(|l| l.starts_with("cairn_blocks_stored_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

fn wrong_passwords_count_on_every_node(cluster: &Cluster) {
    let login = |url: &str, password: &str| {
        let client = Client {
            config_dir: tempfile::tempdir().unwrap(),
        };
        let out = client.run_with_stdin(
            &["login", url, "--user", "bob", "--password-stdin"],
            password,
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The default allowance is 10 failures per account in 5 minutes: 9 on node 1…
    for _ in 0..9 {
        let (ok, _) = login(&cluster.nodes[0].url, "wrong");
        assert!(!ok);
    }
    // …the 10th on node 2…
    let (ok, err) = login(&cluster.nodes[1].url, "wrong");
    assert!(!ok && !err.contains("too many"), "{err}");
    // …and node 2 refuses even the right password now.
    let (ok, err) = login(&cluster.nodes[1].url, ADMIN_PASSWORD);
    assert!(!ok && err.to_lowercase().contains("too many"), "{err}");
}

fn run(events_url: &str) {
    let mut cluster = Cluster::start(2, events_url);
    cluster.admin(
        &["user", "add", "bob", "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    sync_pinned_to_each_node_converges_in_real_time(&cluster);
    wrong_passwords_count_on_every_node(&cluster);
    a_killed_node_leaves_the_upload_to_the_other(&mut cluster);
    cluster.finish();
}

#[test]
fn two_nodes_over_nats() {
    run("nats://127.0.0.1:4222");
}

#[test]
fn two_nodes_over_postgres_listen_notify() {
    run("postgres");
}

/// A node that cannot reach what it shares refuses to start: one line saying what and
/// where, a non-zero exit, no panic, within seconds.
#[test]
fn bad_scale_out_settings_stop_the_start_with_one_line() {
    let good = cairn_store::S3Config::for_tests("cluster-tests/bad-settings");
    let with = |change: &dyn Fn(&mut cairn_store::S3Config)| {
        let mut s3 = good.clone();
        change(&mut s3);
        s3.to_env()
    };
    type Case<'a> = (&'a str, Vec<(String, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "an unreachable S3 endpoint",
            with(&|s3| s3.endpoint = Some(format!("http://127.0.0.1:{}", free_port()))),
            "cannot open the block store at s3://",
        ),
        (
            "a wrong secret key",
            with(&|s3| s3.secret_access_key = Some("not the secret".into())),
            "SignatureDoesNotMatch",
        ),
        (
            "a missing bucket",
            with(&|s3| s3.bucket = "no-such-bucket-here".into()),
            "NoSuchBucket",
        ),
        (
            "an unreachable NATS",
            vec![(
                "CAIRN_EVENTS_URL".to_owned(),
                format!("nats://127.0.0.1:{}", free_port()),
            )],
            "cannot connect to the event bus at nats://",
        ),
    ];
    for (what, env, needle) in cases {
        let data = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("CAIRN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CAIRN_LOG", "off")
            .envs(env)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert!(!out.status.success(), "{what}: the server started");
        assert_eq!(errors.len(), 1, "{what}: {stderr}");
        assert!(errors[0].contains(needle), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
    }
}
