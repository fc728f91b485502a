//! WebDAV at `/dav/` through the real binary, with the clients people use: litmus (the
//! protocol's conformance suite), rclone (a tree in and out, both of its vendor modes)
//! and a davfs2 mount whose changes a running `cairn sync` must see.
//!
//! Each needs its program installed (Debian's `litmus`, `rclone`, `davfs2`; `.ci/run`
//! installs them); without it the test fails and says how to install it. The davfs2
//! test mounts, so it needs root and `/dev/fuse`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use support::{
    output_within, random_file, require_program, same_content, tree, wait_until, Client, Device,
    Server, SyncProcess,
};

/// The WebDAV root of a server.
fn dav_url(server: &Server) -> String {
    format!("{}/dav/", server.url)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// litmus

/// The suites litmus runs by default, all of which must pass.
const LITMUS_SUITES: [&str; 5] = ["basic", "copymove", "props", "locks", "http"];

#[test]
fn litmus_passes_every_suite() {
    let litmus = require_program("litmus", "apt-get install litmus");
    let server = Server::start();
    let client = server.login("admin");
    // litmus writes its `debug.log` (and a `child.log`) into its working directory.
    let cwd = tempfile::tempdir().unwrap();
    let out = output_within(
        Command::new(litmus)
            .arg(dav_url(&server))
            .arg(client.user())
            .arg(client.dav_password())
            .current_dir(cwd.path()),
        Duration::from_secs(300),
    );
    let stdout = text(&out.stdout);
    for suite in LITMUS_SUITES {
        let summary = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("<- summary for `{suite}': ")))
            .unwrap_or_else(|| panic!("litmus ran no `{suite}` suite:\n{stdout}"));
        // "of 16 tests run: 16 passed, 0 failed. 100.0%"
        let (run, passed) = summary
            .strip_prefix("of ")
            .and_then(|s| s.split_once(" tests run: "))
            .and_then(|(run, rest)| Some((run, rest.split_once(" passed, 0 failed.")?.0)))
            .unwrap_or_else(|| panic!("`{suite}`: {summary}\n{stdout}"));
        assert_eq!(run, passed, "`{suite}`: {summary}");
        assert!(run.parse::<u32>().unwrap() > 0, "`{suite}` ran no test");
    }
    assert_success("litmus", &out);
}

// ---------------------------------------------------------------------------------
// rclone

/// Folders of the test tree, several levels deep, with spaces and non-ASCII names
/// (written as escapes so the source's own normalization cannot change them: all are
/// NFC, as the server stores names).
const FOLDERS: [&str; 10] = [
    "",
    "docs",
    "docs/r\u{e9}sum\u{e9}s 2021",
    "docs/r\u{e9}sum\u{e9}s 2021/\u{fc}ber alles",
    "docs/r\u{e9}sum\u{e9}s 2021/\u{fc}ber alles/\u{65e5}\u{672c}",
    "docs/r\u{e9}sum\u{e9}s 2021/\u{fc}ber alles/\u{65e5}\u{672c}/deep level five",
    "photos",
    "photos/Z\u{fc}rich trip",
    "photos/Z\u{fc}rich trip/raw files",
    "\u{65e5}\u{672c}\u{8a9e} folder/a/b/c",
];

const NAME_STEMS: [&str; 5] = [
    "file",
    "notes \u{e9}t\u{e9}",
    "gr\u{fc}\u{df}e",
    "\u{65e5}\u{672c} report",
    "two  spaces",
];

/// The mixed files: 999 from 0 bytes to 1 MiB, and one of 200 MB.
const MIXED_FILES: usize = 999;
const BIG_FILE: &str = "photos/Z\u{fc}rich trip/raw files/big video \u{e9}.bin";
const BIG_SIZE: u64 = 200_000_000;

/// Writes the test tree under `root`, each file with its own modification time (whole
/// seconds in 2021), and returns how many files it holds.
fn write_mixed_tree(root: &Path) -> usize {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut paths = Vec::new();
    for i in 0..MIXED_FILES {
        let folder = FOLDERS[i % FOLDERS.len()];
        let stem = NAME_STEMS[(i / FOLDERS.len()) % NAME_STEMS.len()];
        let ext = ["txt", "bin", "jpg", "md"][i % 4];
        let size = match i % 25 {
            0 => 0,
            1 => 1 << 20,
            2..=4 => next() % (1 << 20),
            _ => next() % (64 << 10),
        };
        let path = root.join(folder).join(format!("{stem} {i:04}.{ext}"));
        paths.push((path, size));
    }
    paths.push((root.join(BIG_FILE), BIG_SIZE));
    let count = paths.len();
    for (i, (path, size)) in paths.into_iter().enumerate() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        random_file(&path, size, 1 + i as u64);
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_609_459_200 + 3_607 * i as u64);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }
    count
}

/// Every file below `root`: its path relative to `root`, and its full path.
fn files_below(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, path);
            }
        }
    }
    out
}

/// rclone with a temp config holding two `webdav` remotes on one server, `other` and
/// `nextcloud`, named after their vendor.
struct Rclone {
    program: PathBuf,
    config: tempfile::TempDir,
}

impl Rclone {
    fn new(server: &Server, client: &Client) -> Rclone {
        let program = require_program("rclone", "apt-get install rclone");
        let config = tempfile::tempdir().unwrap();
        let mut rclone = Rclone { program, config };
        let obscured = rclone.ok(&["obscure", &client.dav_password()], 30);
        let obscured = text(&obscured.stdout).trim().to_owned();
        let mut conf = String::new();
        for vendor in ["other", "nextcloud"] {
            conf.push_str(&format!(
                "[{vendor}]\ntype = webdav\nurl = {}\nvendor = {vendor}\nuser = {}\npass = {obscured}\n\n",
                dav_url(server),
                client.user()
            ));
        }
        fs::write(rclone.config_file(), conf).unwrap();
        rclone
    }

    fn config_file(&self) -> PathBuf {
        self.config.path().join("rclone.conf")
    }

    /// Runs rclone (at most `secs` seconds) and asserts it succeeded.
    fn ok(&mut self, args: &[&str], secs: u64) -> Output {
        let mut cmd = Command::new(&self.program);
        // rclone fails to load a CA bundle named there, and needs none for http://.
        cmd.env_remove("AWS_CA_BUNDLE")
            .arg("--config")
            .arg(self.config_file())
            .args(args);
        let out = output_within(&mut cmd, Duration::from_secs(secs));
        assert_success(&format!("rclone {args:?}"), &out);
        out
    }

    /// `rclone copy` with a JSON log: the `stats` object of its final report.
    fn copy(&mut self, from: &str, to: &str) -> serde_json::Value {
        let started = std::time::Instant::now();
        let out = self.ok(&["copy", from, to, "--use-json-log", "-v"], 900);
        eprintln!("rclone copy {from} {to}: {:.1?}", started.elapsed());
        let stderr = text(&out.stderr);
        stderr
            .lines()
            .rev()
            .find_map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).ok()?;
                record.get("stats").cloned()
            })
            .unwrap_or_else(|| panic!("rclone copy printed no stats:\n{stderr}"))
    }

    /// `rclone check` (with `--download`: by content), asserting no difference.
    fn check(&mut self, local: &Path, remote: &str, download: bool) {
        let mut args = vec!["check", path_str(local), remote];
        if download {
            args.push("--download");
        }
        let started = std::time::Instant::now();
        let out = self.ok(&args, 900);
        eprintln!("rclone {args:?}: {:.1?}", started.elapsed());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(": 0 differences found"),
            "rclone {args:?}:\n{stderr}"
        );
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

fn stat_count(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

#[test]
fn rclone_copies_a_mixed_tree_in_and_out_with_both_vendors() {
    let server = Server::start();
    let client = server.login("admin");
    let mut rclone = Rclone::new(&server, &client);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let started = std::time::Instant::now();
    let count = write_mixed_tree(&source);
    eprintln!("wrote {count} files: {:.1?}", started.elapsed());
    let source_files = files_below(&source);
    assert_eq!(source_files.len(), count);

    for vendor in ["other", "nextcloud"] {
        let remote = format!("{vendor}:rclone-{vendor}");
        let first = rclone.copy(path_str(&source), &remote);
        assert_eq!(stat_count(&first, "transfers"), count as u64, "{first}");
        assert_eq!(stat_count(&first, "errors"), 0, "{first}");
        rclone.check(&source, &remote, vendor == "nextcloud");

        // Nothing changed: a second copy compares and sends nothing.
        let again = rclone.copy(path_str(&source), &remote);
        assert_eq!(stat_count(&again, "transfers"), 0, "{vendor}: {again}");
        assert_eq!(
            stat_count(&again, "checks"),
            count as u64,
            "{vendor}: {again}"
        );

        // And back out, byte for byte.
        let back = work.path().join(format!("back-{vendor}"));
        let out = rclone.copy(&remote, path_str(&back));
        assert_eq!(stat_count(&out, "transfers"), count as u64, "{out}");
        let back_files = files_below(&back);
        assert_eq!(
            back_files.keys().collect::<Vec<_>>(),
            source_files.keys().collect::<Vec<_>>(),
            "{vendor}: the tree that came back differs in its names"
        );
        for (rel, path) in &source_files {
            assert!(
                same_content(path, &back_files[rel]),
                "{vendor}: {rel} came back different"
            );
        }
        if vendor == "nextcloud" {
            // rclone sends X-OC-Mtime and reads getlastmodified: times survive.
            for (rel, path) in &source_files {
                let sent = fs::metadata(path).unwrap().modified().unwrap();
                let got = fs::metadata(&back_files[rel]).unwrap().modified().unwrap();
                let skew = sent
                    .duration_since(got)
                    .or_else(|_| got.duration_since(sent))
                    .unwrap();
                assert!(
                    skew <= Duration::from_secs(1),
                    "{rel}: sent with mtime {sent:?}, came back with {got:?}"
                );
            }
        }
        fs::remove_dir_all(&back).unwrap();
    }
}

// ---------------------------------------------------------------------------------
// davfs2

/// A davfs2 mount of a server's `/dav/` on a temp mountpoint, with its own config,
/// secrets and cache; unmounted on drop.
struct DavfsMount {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl DavfsMount {
    fn mount(server: &Server, client: &Client) -> DavfsMount {
        require_program("mount.davfs", "apt-get install davfs2");
        let id = output_within(Command::new("id").arg("-u"), Duration::from_secs(10));
        assert_eq!(
            text(&id.stdout).trim(),
            "0",
            "mounting davfs2 needs root (and /dev/fuse)"
        );
        let group = output_within(
            Command::new("getent").args(["group", "davfs2"]),
            Duration::from_secs(10),
        );
        assert!(
            group.status.success(),
            "davfs2's group is missing: Debian's davfs2 package creates it (apt-get install davfs2)"
        );
        let dir = tempfile::tempdir().unwrap();
        // mount.davfs runs as the `davfs2` user once mounted: it must reach its cache
        // through the temp dir (0700 as made) and create its folder in the cache.
        chmod(dir.path(), "755");
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        run_ok(Command::new("chown").arg("root:davfs2").arg(&cache));
        chmod(&cache, "775");
        let url = dav_url(server);
        let secrets = dir.path().join("secrets");
        fs::write(
            &secrets,
            format!("{url} {} \"{}\"\n", client.user(), client.dav_password()),
        )
        .unwrap();
        // davfs2 refuses a secrets file others can read.
        chmod(&secrets, "600");
        let conf = dir.path().join("davfs2.conf");
        fs::write(
            &conf,
            format!(
                "secrets {}\ncache_dir {}\n\
                 # LOCK before PUT, as desktop clients do.\nuse_locks 1\n\
                 # Upload at close, not some seconds later.\ndelay_upload 0\n\
                 # With the default 16 KiB, readdir fails with EINVAL on Linux 6.16 and later.\n\
                 buf_size 64\n",
                secrets.display(),
                cache.display()
            ),
        )
        .unwrap();
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        let out = output_within(
            Command::new("mount")
                .args(["-t", "davfs", &url])
                .arg(&mountpoint)
                .arg("-o")
                .arg(format!("conf={}", conf.display())),
            Duration::from_secs(60),
        );
        assert_success("mount -t davfs", &out);
        let mount = DavfsMount {
            mountpoint,
            _dir: dir,
        };
        assert!(
            mount.is_mounted(),
            "mount -t davfs succeeded but {:?} is not in /proc/mounts",
            mount.mountpoint
        );
        mount
    }

    fn is_mounted(&self) -> bool {
        let mounts = fs::read_to_string("/proc/mounts").unwrap();
        let want = self.mountpoint.to_string_lossy();
        mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*want))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }
}

impl Drop for DavfsMount {
    fn drop(&mut self) {
        if !self.is_mounted() {
            return;
        }
        // umount.davfs waits for mount.davfs to upload what it still holds and exit.
        let mut umount = Command::new("umount");
        umount.arg(&self.mountpoint);
        let done = umount
            .spawn()
            .ok()
            .map(|mut child| {
                let ok = wait_until(
                    || matches!(child.try_wait(), Ok(Some(_))),
                    Duration::from_secs(60),
                );
                if !ok {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                ok
            })
            .unwrap_or(false);
        if !done || self.is_mounted() {
            // Detach it at least, so the temp dir can go and nothing hangs on it.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

fn chmod(path: &Path, mode: &str) {
    run_ok(Command::new("chmod").arg(mode).arg(path));
}

fn run_ok(cmd: &mut Command) {
    let out = output_within(cmd, Duration::from_secs(30));
    assert_success(&format!("{cmd:?}"), &out);
}

/// Writes `content` to a file on the mount and waits for it to be closed and synced.
fn write_through(path: &Path, content: &str) {
    use std::io::Write;
    let mut file = fs::File::create(path).unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

/// Waits (30 s at most) until the sync folder holds what `want` says; the message
/// shows what it held instead.
fn arrives(device: &Device, what: &str, want: impl Fn(&Path) -> bool) {
    let ok = wait_until(|| want(&device.dir), Duration::from_secs(30));
    assert!(
        ok,
        "{what}: not seen by `cairn sync` within 30 s; its folder holds {:?}",
        tree(&device.dir).keys().collect::<Vec<_>>()
    );
}

fn holds(dir: &Path, rel: &str, content: &str) -> bool {
    fs::read_to_string(dir.join(rel)).is_ok_and(|c| c == content)
}

#[test]
fn davfs2_changes_reach_a_running_sync_client() {
    let server = Server::start();
    let device = Device::new(&server, "admin", "laptop");
    fs::create_dir_all(&device.dir).unwrap();
    let _sync = SyncProcess::start(&device.client, &device.dir);
    let dav_client = server.login("admin");
    let mount = DavfsMount::mount(&server, &dav_client);

    // A file: created, edited, renamed, deleted.
    write_through(&mount.path("notes.txt"), "first draft\n");
    arrives(&device, "a file created", |d| {
        holds(d, "notes.txt", "first draft\n")
    });
    write_through(&mount.path("notes.txt"), "second draft, longer\n");
    arrives(&device, "an edit", |d| {
        holds(d, "notes.txt", "second draft, longer\n")
    });
    let renamed = "notes r\u{e9}vis\u{e9}es.txt";
    fs::rename(mount.path("notes.txt"), mount.path(renamed)).unwrap();
    arrives(&device, "a rename", |d| {
        holds(d, renamed, "second draft, longer\n") && !d.join("notes.txt").exists()
    });
    fs::remove_file(mount.path(renamed)).unwrap();
    arrives(&device, "a delete", |d| !d.join(renamed).exists());

    // A folder: made, given a file, renamed, deleted.
    fs::create_dir(mount.path("Projects")).unwrap();
    arrives(&device, "a folder made", |d| d.join("Projects").is_dir());
    write_through(&mount.path("Projects/plan.md"), "# Plan\n");
    arrives(&device, "a file in the folder", |d| {
        holds(d, "Projects/plan.md", "# Plan\n")
    });
    let folder = "Projets \u{65e5}\u{672c}";
    fs::rename(mount.path("Projects"), mount.path(folder)).unwrap();
    arrives(&device, "a folder renamed", |d| {
        holds(d, &format!("{folder}/plan.md"), "# Plan\n") && !d.join("Projects").exists()
    });
    fs::remove_dir_all(mount.path(folder)).unwrap();
    arrives(&device, "a folder deleted", |d| !d.join(folder).exists());

    // What the mount did, the server did: the files went to the trash, nothing else
    // is left in the account.
    let listing = dav_client.json(&["ls", "/", "--json"]);
    assert_eq!(listing.as_array().map(Vec::len), Some(0), "{listing}");
}
