//! The embedded PostgreSQL shared by several processes in one folder: the last one to leave stops
//! it, a taken port fails before the database is touched, a restart right after `kill -9` of
//! both works, root gets a clear message where `postgres` cannot reach, and a person gets `psql`
//! and the URL without digging for the password.

use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, Uid},
};

use crate::{
    child::{Service, command},
    helpers::{Event, SECRET, reachable_temp_dir, test_database},
};

/// Runs the binary to its end in `dir`: (exit code, stdout, stderr).
async fn run_in(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec![("FLUID_WEBHOOK_SECRET", SECRET)];
    all.extend_from_slice(vars);
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        command(&all).args(args).current_dir(dir).output(),
    )
    .await
    .expect("finishes")
    .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn readyz(service: &Service) -> u16 {
    reqwest::get(format!("{}/readyz", service.address))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_in_the_folder_leaves_the_running_service_its_database() {
    let dir = reachable_temp_dir("fluid-webhooks-shared");
    let first = Service::start(&[], Some(dir.path())).await;

    let (code, stdout, stderr) = run_in(dir.path(), &[], &["migrate"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("migrations applied"));
    assert!(stderr.contains("another process uses it"), "{stderr}");
    assert_eq!(
        readyz(&first).await,
        200,
        "the first service still has its database"
    );
    let body = Event::new("transaction.completed", "evt_shared", "FLU-SHARED").body();
    assert_eq!(first.post(&body).await, 200);

    // A second serve on the first one's port fails before it touches any database.
    let port = first.address.rsplit(':').next().expect("port").to_string();
    let elsewhere = reachable_temp_dir("fluid-webhooks-port-taken");
    let (code, _, stderr) = run_in(elsewhere.path(), &[("PORT", &port)], &["serve"]).await;
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("listening on") && stderr.contains("set PORT"),
        "{stderr}"
    );
    assert!(
        !elsewhere.path().join(".data").exists(),
        "nothing was created"
    );
    assert_eq!(readyz(&first).await, 200);

    let (code, logs) = first.terminate().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(
        logs.contains("embedded PostgreSQL stopped"),
        "the last user stops it:\n{logs}"
    );
    assert!(!logs.contains("could not stop"), "{logs}");
    assert!(!dir.path().join(".data/postgres/postmaster.pid").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_right_after_kill_9_of_the_service_and_its_database_works() {
    let dir = reachable_temp_dir("fluid-webhooks-kill9");
    let mut first = Service::start(&[], Some(dir.path())).await;
    let body = Event::new("transaction.completed", "evt_k9", "FLU-K9").body();
    assert_eq!(first.post(&body).await, 200);
    let pid_file = std::fs::read_to_string(dir.path().join(".data/postgres/postmaster.pid"))
        .expect("postmaster.pid");
    let postmaster: i32 = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    first.child.start_kill().expect("SIGKILL the service");
    kill(Pid::from_raw(postmaster), Signal::SIGKILL).expect("SIGKILL PostgreSQL");
    first.child.wait().await.expect("killed");

    let second = Service::start(&[], Some(dir.path())).await;
    assert_eq!(readyz(&second).await, 200);
    assert_eq!(
        second.post(&body).await,
        200,
        "the stored event is there: a duplicate"
    );
    let (code, logs) = second.terminate().await;
    assert_eq!(code, Some(0), "{logs}");
    assert!(logs.contains(r#""outcome":"duplicate""#), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_is_told_when_postgres_cannot_reach_the_folder_or_it_is_another_users() {
    if !Uid::effective().is_root() {
        eprintln!(
            "as a normal user PostgreSQL runs as ourselves; the rule is unit tested (access.rs)"
        );
        return;
    }
    // Like a clone under /root: a 0700 folder of root's above the working folder.
    let top = reachable_temp_dir("fluid-webhooks-root-home");
    let home = top.path().join("home");
    std::fs::create_dir(&home).expect("home");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let clone = home.join("clone");
    std::fs::create_dir(&clone).expect("clone");
    let (code, _, stderr) = run_in(&clone, &[], &["serve"]).await;
    assert_ne!(code, Some(0));
    for words in [
        "FLUID_WEBHOOKS_DATABASE__EMBEDDED_DATA_DIR",
        "cannot enter",
        "`postgres`",
    ] {
        assert!(stderr.contains(words), "{words} in {stderr}");
    }
    assert!(!clone.join(".data").exists(), "nothing was created");

    // A data folder made by another OS user.
    let theirs = reachable_temp_dir("fluid-webhooks-theirs");
    let data = theirs.path().join(".data/postgres");
    std::fs::create_dir_all(&data).expect("data");
    nix::unistd::chown(&data, Some(Uid::from_raw(65534)), None).expect("chown");
    let (code, _, stderr) = run_in(theirs.path(), &[], &["migrate"]).await;
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("belongs to") && stderr.contains("uid 65534"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_database_url_open_the_services_database() {
    let dir = reachable_temp_dir("fluid-webhooks-psql");
    let (code, url, stderr) = run_in(dir.path(), &[], &["database-url"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let password = std::fs::read_to_string(dir.path().join(".data/postgres.password"))
        .expect("the generated password");
    assert!(
        url.starts_with("postgres://postgres:****@127.0.0.1:"),
        "{url}"
    );
    assert!(!url.contains(password.trim()) && !stderr.contains(password.trim()));
    let (_, shown, _) = run_in(dir.path(), &[], &["database-url", "--show-password"]).await;
    assert!(shown.contains(password.trim()), "--show-password shows it");

    // psql on the embedded server (left running by database-url; psql, its last user, stops it).
    let (code, out, stderr) =
        run_in(dir.path(), &[], &["psql", "--", "-Atc", "SELECT 40 + 2"]).await;
    assert_eq!((code, out.trim()), (Some(0), "42"), "{stderr}");
    assert!(
        !dir.path().join(".data/postgres/postmaster.pid").exists(),
        "stopped after"
    );

    // And on DATABASE_URL.
    let database = test_database().await;
    let name = database.rsplit('/').next().expect("name").to_string();
    let (code, out, stderr) = run_in(
        dir.path(),
        &[("DATABASE_URL", &database)],
        &["psql", "--", "-Atc", "SELECT current_database()"],
    )
    .await;
    assert_eq!((code, out.trim()), (Some(0), name.as_str()), "{stderr}");
}
