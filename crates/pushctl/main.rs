//! `pushctl`: see the `pushd_ctl` crate.

fn main() -> std::process::ExitCode {
    pushd_ctl::main()
}
