//! Starting a real server process and running client commands against it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// A `cairn serve` child process, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// The data dir; taken by `stop`.
    pub data: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(data)
    }

    pub fn start_in(data: tempfile::TempDir) -> Server {
        Self::spawn(data, Some(ADMIN_PASSWORD), Stdio::null())
    }

    /// Starts `cairn serve`; without an admin password in the environment the server
    /// generates one and prints it on the stdout given here.
    pub fn spawn(data: tempfile::TempDir, admin_password: Option<&str>, stdout: Stdio) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env_remove("CAIRN_ADMIN_PASSWORD")
            .env("CAIRN_LOG", "warn")
            .stdout(stdout)
            .stderr(Stdio::piped());
        if let Some(password) = admin_password {
            cmd.env("CAIRN_ADMIN_PASSWORD", password);
        }
        let (child, url) = spawn_serve(cmd);
        Server {
            child,
            url,
            data: Some(data),
        }
    }

    /// Stops the server and hands back its data dir, for a restart.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data.take().expect("a running server has its data dir")
    }

    /// Logs in as `user` (the admin password) with a fresh client config dir.
    pub fn login(&self, user: &str) -> Client {
        self.login_with(user, ADMIN_PASSWORD)
    }

    pub fn login_with(&self, user: &str, password: &str) -> Client {
        self.login_with_result(user, password)
            .unwrap_or_else(|err| panic!("login failed: {err}"))
    }

    /// Logs in; the error is the command's stderr.
    pub fn login_with_result(&self, user: &str, password: &str) -> Result<Client, String> {
        let client = Client {
            config_dir: tempfile::tempdir().unwrap(),
        };
        let out = client.run_with_stdin(
            &["login", &self.url, "--user", user, "--password-stdin"],
            password,
        );
        if out.status.success() {
            Ok(client)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `cairn admin …` on this server's data dir.
    pub fn admin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(self.data.as_ref().unwrap().path());
        run(cmd, stdin)
    }

    /// The current value of a counter read from `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let body = http_get(&format!("{}/metrics", self.url));
        body.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Spawns a prepared `cairn serve` command (stderr must be piped) and waits for it to
/// say where it listens. Returns the child and its base URL; the server's other stderr
/// lines are passed on to the test's output.
pub fn spawn_serve(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.spawn().expect("starting cairn serve");
    let stderr = child.stderr.take().expect("the server's stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(url) = line.strip_prefix("cairn serving on ") {
                    let _ = tx.send(url.to_owned());
                    sent = true;
                    continue;
                }
            }
            eprintln!("[server] {line}");
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not report its address within 60 s");
    (child, url)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with its own config dir (credentials).
pub struct Client {
    pub config_dir: tempfile::TempDir,
}

fn run(cmd: Command, stdin: &str) -> Output {
    run_bytes(cmd, stdin.as_bytes())
}

/// Runs `cmd` with `stdin` on its standard input, fed from a thread so that a child
/// writing much output while it reads cannot deadlock with us.
fn run_bytes(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cairn");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // A child that stops reading early (it failed) closes the pipe: not our error.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

impl Client {
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("CAIRN_CONFIG_DIR", self.config_dir.path());
        run(cmd, stdin)
    }

    /// Runs a command with raw bytes on its standard input.
    pub fn run_with_stdin_bytes(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("CAIRN_CONFIG_DIR", self.config_dir.path());
        run_bytes(cmd, stdin)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must print JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("cairn {args:?}: bad JSON {e}: {out}"))
    }

    /// The user name this login belongs to (from its `credentials.json`).
    pub fn user(&self) -> String {
        self.credential("user")
    }

    /// A password a WebDAV client uses for this login, with [`Client::user`] as the
    /// user name: a new app password (`cairn app-password create NAME --json`).
    pub fn dav_password(&self) -> String {
        let name = format!("webdav-{:08x}", rand::random::<u32>());
        let made = self.json(&["app-password", "create", &name, "--json"]);
        made["password"]
            .as_str()
            .unwrap_or_else(|| panic!("no password in {made}"))
            .to_owned()
    }

    fn credential(&self, field: &str) -> String {
        let path = self.config_dir.path().join("credentials.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        value[field]
            .as_str()
            .unwrap_or_else(|| panic!("credentials.json has no {field}"))
            .to_owned()
    }

    /// Runs a command that must fail with a one-line message containing `needle`.
    pub fn fails(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "cairn {args:?} should have failed");
        assert!(
            stderr.contains(needle),
            "cairn {args:?}: {stderr:?} lacks {needle:?}"
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr:?}"
        );
    }
}

/// Writes `size` pseudo-random (incompressible) bytes derived from `seed`.
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            // xorshift64*: fast, and enough to defeat compression and dedup.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// Compares two files by content without loading them whole.
pub fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// A plain HTTP/1.1 GET over loopback, enough for `/metrics` without a client crate.
pub fn http_get(url: &str) -> String {
    String::from_utf8_lossy(&http_fetch(url, &[]).1).into_owned()
}

/// A plain HTTP/1.1 GET with extra header lines (`Name: value`): the status and body.
pub fn http_fetch(url: &str, headers: &[&str]) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

/// Runs `cmd` to its end, but for at most `timeout`: its output, or a panic naming the
/// command once it has been killed (by its PID) for running too long.
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let err = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
            panic!("{cmd:?} still ran after {timeout:?}; killed. stderr: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Where `name` is installed (on `PATH`, or in the `sbin` folders a non-login root
/// shell may leave out), or a failure that says how to install it: a test that needs
/// an outside program fails without it rather than passing vacuously.
pub fn require_program(name: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed: `{install}` (CI installs it)"))
}

pub fn wait_until(mut f: impl FnMut() -> bool, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A running `cairn sync DIR`, stopped (by its PID) on drop.
pub struct SyncProcess {
    child: Child,
}

impl SyncProcess {
    pub fn start(client: &Client, dir: &Path) -> SyncProcess {
        Self::spawn(client, dir, Stdio::inherit())
    }

    /// Starts one whose messages (its reports) go to the file `log`.
    pub fn start_logged(client: &Client, dir: &Path, log: &Path) -> SyncProcess {
        Self::spawn(client, dir, File::create(log).unwrap().into())
    }

    fn spawn(client: &Client, dir: &Path, stderr: Stdio) -> SyncProcess {
        let child = Command::new(BIN)
            .arg("sync")
            .arg(dir)
            .env("CAIRN_CONFIG_DIR", client.config_dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting cairn sync");
        SyncProcess { child }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it a signal by its PID (`INT`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Its exit status once it has exited, waiting at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for SyncProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A device: its own login (with a device name) and its own folder.
pub struct Device {
    pub client: Client,
    pub dir: PathBuf,
    /// The temp folder holding `dir`, for files that must stay outside it.
    pub scratch: tempfile::TempDir,
}

impl Device {
    /// A device of `user` (whose password is the admin's) called `name`.
    pub fn new(server: &Server, user: &str, name: &str) -> Device {
        Self::at(&server.url, user, name)
    }

    /// A device of `user` (whose password is the admin's) called `name`, logged in at
    /// `url` (a server's, or a load balancer's in front of several).
    pub fn at(url: &str, user: &str, name: &str) -> Device {
        let client = Client {
            config_dir: tempfile::tempdir().unwrap(),
        };
        let out = client.run_with_stdin(
            &[
                "login",
                url,
                "--user",
                user,
                "--password-stdin",
                "--device",
                name,
            ],
            ADMIN_PASSWORD,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = tempfile::tempdir().unwrap();
        Device {
            client,
            dir: dir.path().join("Cairn"),
            scratch: dir,
        }
    }
}

/// What a folder holds: path → content hash (`None` for a folder), leaving out the
/// sync engine's own temp files.
pub fn tree(dir: &Path) -> BTreeMap<String, Option<blake3::Hash>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".cairn-tmp-") {
                continue;
            }
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else if let Ok(bytes) = fs::read(&path) {
                out.insert(rel, Some(blake3::hash(&bytes)));
            }
        }
    }
    out
}

/// Writes a text file, creating the folders above it.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, text).unwrap();
}

/// Every stored block file under a data directory (the local block store's layout).
pub fn block_files(data: &Path) -> std::collections::BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut std::collections::BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.insert(path);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(&data.join("blocks"), &mut out);
    out
}
