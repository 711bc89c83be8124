//! `waddlec schematic`: the Image Factory schematic ID of a set of
//! extensions and kernel arguments, computed offline, and registration of a
//! blueprint's schematic with a factory (checked against our ID).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{exit, print_out, Format};
use crate::net::factory;
use crate::plan::schematic::{self, Schematic};

#[derive(Subcommand)]
pub enum SchematicCommand {
    /// Print the schematic ID of these extensions and kernel arguments,
    /// offline. Extensions are sorted and de-duplicated (the set decides the
    /// ID, as in the factory's UI); kernel arguments keep their order.
    ///
    /// Example: waddlec schematic id --extension siderolabs/qemu-guest-agent
    Id(IdArgs),
    /// Register the blueprint's schematic with the Image Factory
    /// (`POST /schematics`) and check the factory computed the same ID.
    /// Prints the ID, disk image URL and installer image.
    Register(RegisterArgs),
}

#[derive(Args)]
pub struct IdArgs {
    /// An official system extension, e.g. `siderolabs/iscsi-tools` (repeatable).
    #[arg(long = "extension", value_name = "NAME")]
    extensions: Vec<String>,
    /// A kernel argument, e.g. `console=ttyS0` (repeatable, kept in order).
    #[arg(long = "kernel-arg", value_name = "ARG")]
    kernel_args: Vec<String>,
    /// Also print the canonical schematic YAML the ID is the hash of.
    #[arg(long)]
    show_yaml: bool,
}

#[derive(Args)]
pub struct RegisterArgs {
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// The Image Factory to register with.
    #[arg(long, value_name = "URL", default_value_t = factory::default_url())]
    factory: String,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(command: SchematicCommand) -> u8 {
    match command {
        SchematicCommand::Id(args) => id(&args),
        SchematicCommand::Register(args) => register(&args),
    }
}

fn id(args: &IdArgs) -> u8 {
    let schematic = Schematic::new(&args.extensions, &args.kernel_args);
    match (schematic.id(), schematic.canonical_yaml()) {
        (Ok(id), Ok(yaml)) => {
            if args.show_yaml {
                print!("{yaml}");
            }
            print_out(&id);
            exit::OK
        }
        (Err(err), _) | (_, Err(err)) => {
            eprintln!("{err}");
            exit::INTERNAL
        }
    }
}

fn register(args: &RegisterArgs) -> u8 {
    let (source, compiled) = match super::compile_blueprint(&args.blueprint, args.format, false) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let model = &compiled.model;
    let Some(cluster) = &model.talos else {
        eprintln!("error: {} has no [talos] table", source.name);
        return exit::USAGE;
    };
    let schematic = Schematic::new(&cluster.extensions, &cluster.kernel_args);
    match factory::register(&args.factory, &schematic) {
        Ok(id) => {
            let version = &cluster.version;
            let disk_image = schematic::disk_image_url(&id, version);
            let installer = schematic::installer_image(&id, version);
            match args.format {
                Format::Json => print_out(
                    &serde_json::json!({
                        "schematic_id": id,
                        "disk_image": disk_image,
                        "installer": installer,
                    })
                    .to_string(),
                ),
                Format::Text => {
                    print_out(&format!(
                        "schematic {id} registered at {}\ndisk image: {disk_image}\ninstaller:  {installer}",
                        args.factory
                    ));
                }
            }
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            exit::UNAVAILABLE
        }
    }
}
