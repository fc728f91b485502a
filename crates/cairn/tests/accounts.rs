//! Accounts through the binary: `cairn passwd`, `cairn app-password
//! create|list|revoke`, `cairn admin user set-password|disable|enable|delete|list`, and
//! `cairn admin` refusing a folder that is not a server's data directory.

mod support;

use std::process::{Command, Output, Stdio};

use support::{Server, BIN};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cairn admin …` that must succeed; its stdout.
fn admin_ok(server: &Server, args: &[&str], stdin: &str) -> String {
    let out = server.admin(args, stdin);
    assert!(
        out.status.success(),
        "cairn admin {args:?}: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// `cairn admin …` that must fail with one line containing `needle`.
fn admin_fails(server: &Server, args: &[&str], needle: &str) {
    let out = server.admin(args, "");
    assert!(
        !out.status.success(),
        "cairn admin {args:?} should have failed"
    );
    let message = stderr(&out);
    assert!(
        message.contains(needle),
        "{args:?}: {message:?} lacks {needle:?}"
    );
    assert_eq!(message.trim_end().lines().count(), 1, "{message:?}");
}

fn add_user(server: &Server, name: &str, password: &str) {
    admin_ok(
        server,
        &["user", "add", name, "--password-stdin"],
        &format!("{password}\n"),
    );
}

/// `cairn admin ARGS` on `dir` with extra environment, no server anywhere.
fn admin_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .arg("admin")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("CAIRN_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn admin_refuses_a_folder_that_is_not_a_data_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("cairn-data");
    for args in [
        &["user", "list"][..],
        &["user", "add", "eve"],
        &["gc"],
        &["fsck"],
    ] {
        let out = admin_in(&missing, args, &[]);
        assert!(
            !out.status.success(),
            "{args:?} ran on a missing data directory"
        );
        let message = stderr(&out);
        assert!(
            message.contains("no Cairn data directory at")
                && message.contains("--data-dir")
                && message.contains("CAIRN_DATA_DIR")
                && message.contains("`cairn serve` creates one"),
            "{message}"
        );
    }
    assert!(
        !missing.exists(),
        "an admin command created the data directory"
    );

    // A folder that exists but holds no database is no data directory either.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = admin_in(&empty, &["user", "list"], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no Cairn database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "it stays empty"
    );
    // With the metadata in PostgreSQL, the folder must still hold the blocks (nothing
    // is connected to before that is checked).
    let out = admin_in(
        &empty,
        &["user", "list"],
        &[(
            "CAIRN_DATABASE_URL",
            "postgres://cairn:secret@127.0.0.1:9/nothing",
        )],
    );
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(message.contains("holds no Cairn block store"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password is not shown: {message}"
    );
}

#[test]
fn passwd_changes_the_password_and_signs_out_the_other_sessions() {
    let server = Server::start();
    add_user(&server, "bob", "bob's first password");
    let here = server.login_with("bob", "bob's first password");
    let elsewhere = server.login_with("bob", "bob's first password");

    let out = here.run_with_stdin(
        &["passwd", "--password-stdin"],
        "not my password\nbob's second password\n",
    );
    assert!(
        !out.status.success(),
        "a wrong current password was accepted"
    );
    assert!(stderr(&out).contains("wrong"), "{}", stderr(&out));
    let out = here.run_with_stdin(&["passwd", "--password-stdin"], "bob's first password\n");
    assert!(!out.status.success(), "one line is not enough");

    let out = here.run_with_stdin(
        &["passwd", "--password-stdin"],
        "bob's first password\nbob's second password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 other session was signed out"),
        "{}",
        stderr(&out)
    );
    // This login keeps working; the other is signed out.
    here.ok(&["ls", "/"]);
    elsewhere.fails(&["ls", "/"], "log in again");
    assert!(server
        .login_with_result("bob", "bob's first password")
        .is_err());
    server
        .login_with("bob", "bob's second password")
        .ok(&["ls", "/"]);
}

#[test]
fn admin_user_commands_set_passwords_disable_enable_and_delete() {
    let server = Server::start();
    add_user(&server, "bob", "bob's password");
    add_user(&server, "carol", "carol's password");
    let bob = server.login_with("bob", "bob's password");
    let carol = server.login_with("carol", "carol's password");
    bob.ok(&["mkdir", "/Team"]);
    let local = tempfile::tempdir().unwrap();
    let plan = local.path().join("plan.txt");
    std::fs::write(&plan, b"the plan").unwrap();
    bob.ok(&["put", plan.to_str().unwrap(), "/Team/plan.txt"]);
    bob.ok(&["put", plan.to_str().unwrap(), "/mine.txt"]);
    bob.ok(&[
        "share", "add", "/Team", "--with", "carol", "--role", "editor",
    ]);

    // The table: a header, a row per user, sizes for people; --json has the numbers.
    let table = admin_ok(&server, &["user", "list"], "");
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ADMIN", "QUOTA", "USAGE", "STATUS", "CREATED"],
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    let bob_row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        bob_row[..6],
        ["bob", "no", "-", "16", "B", "active"],
        "{table}"
    );
    let users: serde_json::Value =
        serde_json::from_str(&admin_ok(&server, &["user", "list", "--json"], "")).unwrap();
    assert_eq!(users[1]["name"], "bob");
    assert_eq!(users[1]["usage_bytes"], 16);
    assert_eq!(users[1]["disabled"], false);

    // Disabled: refused at once, with the reason; enabled: as before, same login.
    admin_ok(&server, &["user", "disable", "bob"], "");
    bob.fails(&["ls", "/"], "disabled");
    let Err(refused) = server.login_with_result("bob", "bob's password") else {
        panic!("a disabled user logged in");
    };
    assert!(refused.contains("disabled"), "{refused}");
    let table = admin_ok(&server, &["user", "list"], "");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bob ") && l.contains("disabled")),
        "{table}"
    );
    admin_ok(&server, &["user", "enable", "bob"], "");
    bob.ok(&["ls", "/"]);

    // A new password from the administrator signs out every session.
    let out = admin_ok(
        &server,
        &["user", "set-password", "bob", "--password-stdin"],
        "set by the admin\n",
    );
    assert!(out.contains("1 session signed out"), "{out}");
    bob.fails(&["ls", "/"], "log in again");
    let bob = server.login_with("bob", "set by the admin");
    bob.ok(&["ls", "/"]);
    admin_fails(
        &server,
        &["user", "set-password", "bob", "--password-stdin"],
        "empty",
    );
    admin_fails(
        &server,
        &["user", "disable", "nobody"],
        "no user named \"nobody\"",
    );

    // The last administrator stays.
    admin_fails(
        &server,
        &["user", "disable", "admin"],
        "last enabled administrator",
    );
    admin_fails(
        &server,
        &["user", "delete", "admin"],
        "last enabled administrator",
    );

    // Deleted: files gone, the team folder Carol's, the name free again.
    let out = admin_ok(&server, &["user", "delete", "bob"], "");
    assert!(out.contains("Deleted 'bob': 1 files"), "{out}");
    assert!(
        out.contains("shared folder 'Team' now belongs to 'carol'"),
        "{out}"
    );
    bob.fails(&["ls", "/"], "log in again");
    assert!(server.login_with_result("bob", "set by the admin").is_err());
    let fetched = local.path().join("fetched.txt");
    carol.ok(&["get", "/Team/plan.txt", fetched.to_str().unwrap()]);
    assert_eq!(std::fs::read(&fetched).unwrap(), b"the plan");
    let shares = carol.json(&["share", "list", "--json"]);
    assert_eq!(shares[0]["role"], "owner", "{shares}");
    admin_fails(&server, &["user", "delete", "bob"], "no user named \"bob\"");
    add_user(&server, "bob", "a new bob's password");
    let new_bob = server.login_with("bob", "a new bob's password");
    assert_eq!(new_bob.ok(&["ls", "/"]).trim(), "");
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&admin_ok(
        &server,
        &["user", "list", "--json"],
        "",
    ))
    .unwrap()
    .as_array()
    .unwrap()
    .iter()
    .map(|u| u["name"].as_str().unwrap().to_owned())
    .collect();
    assert_eq!(names, ["admin", "carol", "bob"]);
}

#[test]
fn app_passwords_are_made_once_listed_and_revoked() {
    let server = Server::start();
    add_user(&server, "bob", "bob's password");
    let bob = server.login_with("bob", "bob's password");

    let out = bob.run(&["app-password", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("no app passwords"),
        "{}",
        stderr(&out)
    );

    // Shown once, with how to use it.
    let made = bob.json(&["app-password", "create", "phone", "--json"]);
    assert_eq!(made["name"], "phone");
    assert_eq!(made["user"], "bob");
    assert_eq!(made["webdav_url"], format!("{}/dav/", server.url));
    let password = made["password"].as_str().unwrap();
    assert_eq!(password.len(), 39, "{password}");
    assert!(made["created_at"].as_i64().unwrap() > 0);
    let out = bob.ok(&["app-password", "create", "rclone on the NAS"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("app password 'rclone on the NAS': "),
        "{out}"
    );
    assert!(lines[1].contains("shown only this once"), "{out}");
    assert!(
        lines[2].contains(&format!("{}/dav/", server.url)) && lines[2].contains("bob"),
        "{out}"
    );

    bob.fails(&["app-password", "create", "phone"], "already exists");
    bob.fails(
        &["app-password", "create", ""],
        "name must be 1 to 64 characters",
    );

    // Listed by name and time, never with a password.
    let listed = bob.json(&["app-password", "list", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["phone", "rclone on the NAS"]);
    assert!(listed[0]["last_used_at"].is_null(), "{listed}");
    assert!(!listed.to_string().contains(password), "{listed}");
    let table = bob.ok(&["app-password", "list"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("phone ") && l.ends_with("never")),
        "{table}"
    );

    // Another account has its own, and cannot revoke Bob's.
    let admin = server.login("admin");
    admin.fails(
        &["app-password", "revoke", "phone"],
        "you have none of that name",
    );

    let out = bob.run(&["app-password", "revoke", "phone"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("revoked app password 'phone'"),
        "{}",
        stderr(&out)
    );
    bob.fails(
        &["app-password", "revoke", "phone"],
        "you have none of that name",
    );
    // A name that cannot be a path segment as it is still reaches the endpoint.
    bob.fails(
        &["app-password", "revoke", "a/b?c"],
        "you have none of that name",
    );
    let listed = bob.json(&["app-password", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Without a login there is nothing to manage.
    let stranger = support::Client {
        config_dir: tempfile::tempdir().unwrap(),
    };
    stranger.fails(&["app-password", "list"], "not logged in");
}
