//! `waddlec image`: disk-image tools. `convert` turns a raw disk image into
//! the qcow2 file Proxmox imports, showing progress on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use waddle_images::qcow2::{self, Qcow2Summary};

use super::exit;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Convert a raw disk image into qcow2 (version 3, 64 KiB clusters,
    /// no backing file, no compression). All-zero clusters take no space.
    /// The same input always gives the same bytes.
    ///
    /// OUTPUT is written beside itself and renamed into place: an existing
    /// file is replaced only by a complete image.
    ///
    /// Example: waddlec image convert talos.raw talos.qcow2
    Convert(ConvertArgs),
}

#[derive(Args)]
pub struct ConvertArgs {
    /// The raw disk image; its size (a multiple of 512 bytes) is the disk's.
    input: PathBuf,
    /// The qcow2 image to write.
    output: PathBuf,
}

pub fn run(command: ImageCommand) -> u8 {
    match command {
        ImageCommand::Convert(args) => convert(&args),
    }
}

fn convert(args: &ConvertArgs) -> u8 {
    let bar = progress_bar();
    let result = qcow2::convert_file(&args.input, &args.output, |progress| {
        bar.set_length(progress.total);
        bar.set_position(progress.done);
    });
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            eprintln!("wrote {}: {}", args.output.display(), describe(&summary));
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            if err.is_io() {
                exit::IO
            } else {
                exit::USAGE
            }
        }
    }
}

/// A bar on stderr when it is a terminal; nothing otherwise (logs and CI).
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(0).with_style(style)
}

fn describe(summary: &Qcow2Summary) -> String {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    format!(
        "{:.1} MiB disk, {} data clusters of {} KiB, {:.1} MiB file",
        mib(summary.virtual_size),
        summary.data_clusters,
        qcow2::CLUSTER_SIZE / 1024,
        mib(summary.file_size)
    )
}
