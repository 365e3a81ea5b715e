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

#[tokio::test]
async fn the_php_client_does_every_operation_against_the_daemon() {
    if !php_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_pushd, mut page, env) = pushd_and_page(dir.path()).await;
    let out = run("php", &["clients/php/tests/check.php"], &env).await;
    assert_eq!(out.trim(), "php: every check passed");
    page_got_everything(&mut page).await;
}

/// Whether php-cli is here; panics when it must be (PUSHD_REQUIRE_PHP, set by CI) and is not.
fn php_available() -> bool {
    let present = Path::new("/usr/bin/php").exists();
    if !present {
        assert!(
            std::env::var_os("PUSHD_REQUIRE_PHP").is_none(),
            "PUSHD_REQUIRE_PHP is set but /usr/bin/php is missing (apt-get install php-cli)"
        );
        eprintln!("skipped: /usr/bin/php is missing");
    }
    present
}

/// The code block after `<!-- example: LANG -->` in the README, and the `text` block after it
/// (what it prints).
fn readme_example(lang: &str) -> (String, String) {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let marker = format!("<!-- example: {lang} -->\n```{lang}\n");
    let start = readme.find(&marker).expect("the example's marker") + marker.len();
    let (code, rest) = readme[start..].split_once("\n```\n").unwrap();
    let output_start = rest.find("```text\n").expect("its output") + "```text\n".len();
    let output = rest[output_start..].split_once("\n```\n").unwrap().0;
    (format!("{code}\n"), format!("{output}\n"))
}

/// Each client's README example prints what the README shows, against the state it describes.
#[tokio::test]
async fn the_readme_examples_of_the_clients_print_what_they_show() {
    for lang in ["python", "php"] {
        if lang == "php" && !php_available() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (pushd, _page, mut env) = pushd_and_page(dir.path()).await;
        let added = pushd.ctl(&["group", "add", "team-7", "42", "carol"]).await;
        assert_eq!(added.status, 0, "{added:?}");
        let (code, shown) = readme_example(lang);
        let out = match lang {
            "python" => {
                env.push(("PYTHONPATH".into(), "clients/python/src".into()));
                run("python3", &["-c", &code], &env).await
            }
            _ => {
                let autoload = repo().join("clients/php/autoload.php");
                let code = code.replace("vendor/autoload.php", autoload.to_str().unwrap());
                let script = dir.path().join("example.php");
                std::fs::write(&script, code).unwrap();
                run("php", &[script.to_str().unwrap()], &env).await
            }
        };
        assert_eq!(out, shown, "the {lang} example");
    }
}
