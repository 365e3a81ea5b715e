//! Completions and man pages are generated from the clap definitions; this
//! test renders them and compares with the committed files.
//!
//! Regenerate after changing an option or a help text:
//!
//! ```sh
//! PUSHD_REGENERATE=1 cargo test --test generated
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Every generated file, by path relative to the workspace root.
fn render_all() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let programs = [
        (pushd_daemon::DaemonArgs::command(), "8"),
        (pushd_ctl::cli::Cli::command(), "1"),
    ];
    for (mut command, section) in programs {
        command.build();
        let name = command.get_name().to_owned();
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command.clone(), &name, &mut out);
            files.insert(Path::new("completions").join(file), out);
        }
        files.insert(
            Path::new("man").join(format!("{name}.{section}")),
            man_page(command.clone(), section),
        );
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let page_name = format!("{name}-{}", sub.get_name());
            let page = sub
                .clone()
                .name(page_name.clone())
                .bin_name(format!("{name} {}", sub.get_name()));
            files.insert(
                Path::new("man").join(format!("{page_name}.{section}")),
                man_page(page, section),
            );
        }
    }
    files
}

fn man_page(command: clap::Command, section: &str) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .section(section)
        .render(&mut out)
        .expect("render man page");
    out
}

#[test]
fn completions_and_man_pages_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = render_all();
    let regenerate = std::env::var_os("PUSHD_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (path, content) in &files {
        let full = root.join(path);
        if std::fs::read(&full).ok().as_deref() == Some(content.as_slice()) {
            continue;
        }
        if regenerate {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, content).unwrap();
        } else {
            stale.push(path.display().to_string());
        }
    }
    // Files nobody generates any more must go too.
    for dir in ["completions", "man"] {
        for entry in std::fs::read_dir(root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = Path::new(dir).join(entry.file_name());
            if !files.contains_key(&path) {
                if regenerate {
                    std::fs::remove_file(root.join(&path)).unwrap();
                } else {
                    stale.push(format!("{} (no longer generated)", path.display()));
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files: {stale:?}\nregenerate with: PUSHD_REGENERATE=1 cargo test --test generated"
    );
}
