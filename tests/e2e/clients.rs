//! SPEC "Backend client libraries": the Python and PHP clients in `clients/`, each run against
//! the real daemon by its own check script, which asserts every operation's result; here, what
//! the page bound to uid 42 received, in order, and the kick that ends the script.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Pushd, STEP, WsClient, within};

const TOKEN: &str = "a-token-for-the-client-libraries";

/// What the page receives from every check script, in order (the text-port pushes are the
/// whole lines the clients wrote).
const PAGE_GETS: [&str; 9] = [
    r#"{"uid":42,"text":"hello"}"#,
    r#"{"uid":42,"t":1,"transient":true}"#,
    r#"{"uid":42,"n":1}"#,
    r#"{"uid":42,"n":2}"#,
    "plain",
    r#"{"group":"team a","g":1}"#,
    "gm",
    "all",
    r#"{"uid":42,"percent":"88%"}"#,
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// pushd with the HTTP API behind `TOKEN`, a page bound to 42, and the environment the
/// clients read their addresses from.
async fn pushd_and_page(dir: &Path) -> (Pushd, WsClient, Vec<(String, String)>) {
    let token = dir.join("http-token");
    std::fs::write(&token, TOKEN).unwrap();
    let args = [
        "--http-listen",
        "127.0.0.1:0",
        "--http-token-file",
        token.to_str().unwrap(),
    ];
    let pushd = Pushd::start(&args).await;
    let page = pushd.bound_client("42").await;
    let env = vec![
        ("PUSHD_TEXT".into(), pushd.text.to_string()),
        (
            "PUSHD_HTTP".into(),
            format!("http://{}", pushd.listener("http")),
        ),
        ("PUSHD_TOKEN".into(), TOKEN.into()),
    ];
    (pushd, page, env)
}

/// Runs `program args` in the repository with `env`; panics with its output unless it
/// succeeds within a minute.
async fn run(program: &str, args: &[&str], env: &[(String, String)]) -> String {
    let output = within(
        Duration::from_secs(60),
        program,
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(repo())
            .envs(env.iter().cloned())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The page got every push of a check script, in order, then the kick.
async fn page_got_everything(page: &mut WsClient) {
    for expected in PAGE_GETS {
        assert_eq!(page.recv_text().await, expected);
    }
    let closed = page.closed(STEP).await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(4000), "bye"),
        "kicked last"
    );
}

async fn python_check(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (_pushd, mut page, mut env) = pushd_and_page(dir.path()).await;
    env.push(("PYTHONPATH".into(), "clients/python/src".into()));
    let out = run("python3", &["clients/python/tests/check.py", mode], &env).await;
    assert_eq!(out.trim(), format!("{mode}: every check passed"));
    page_got_everything(&mut page).await;
}

#[tokio::test]
async fn the_python_client_does_every_operation_against_the_daemon() {
    python_check("sync").await;
}

#[tokio::test]
async fn the_python_asyncio_client_does_every_operation_against_the_daemon() {
    python_check("async").await;
}
