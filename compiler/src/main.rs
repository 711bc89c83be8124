//! The `waddlec` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    waddlec::cli::run()
}
