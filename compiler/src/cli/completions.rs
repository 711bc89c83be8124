//! `waddlec completions SHELL` and `waddlec man`: shell completions and
//! manual pages generated from the clap definitions, so they always say
//! what this binary accepts.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{exit, Cli};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write `waddlec.1` and a page per subcommand (`waddlec-build.1`,
    /// `waddlec-secrets-init.1`…) into DIR instead of printing `waddlec.1`.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> u8 {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "waddlec", &mut script);
    write_stdout(&script)
}

/// Prints the manual page, or writes every page into `--out-dir`.
pub fn man(args: &ManArgs) -> u8 {
    let command = Cli::command();
    if let Some(dir) = &args.out_dir {
        return match std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(command, dir))
        {
            Ok(()) => exit::OK,
            Err(err) => {
                eprintln!(
                    "error: cannot write the manual pages into {}: {err}",
                    dir.display()
                );
                exit::IO
            }
        };
    }
    let mut page = Vec::new();
    match clap_mangen::Man::new(command).render(&mut page) {
        Ok(()) => write_stdout(&page),
        Err(err) => {
            eprintln!("internal error: cannot render the manual page: {err}");
            exit::INTERNAL
        }
    }
}

/// A closed pipe (`waddlec man | head`) is no error worth reporting.
fn write_stdout(bytes: &[u8]) -> u8 {
    let _ = std::io::stdout().lock().write_all(bytes);
    exit::OK
}
