//! Plan: what the actors carry out, derived from the model and the rendered
//! files. Bake follows the image plan (`images`: every VM's boot image and
//! seed disk, named by what goes into them); deploy and the qm script
//! create VMs from one definition (`vm`: the `POST /nodes/{node}/qemu`
//! parameters); the Image Factory client registers the cluster's
//! `schematic` and the bake fetches its image. Pure like render: the
//! actors consume these types, never a renderer.

pub mod images;
pub mod schematic;
pub mod vm;
