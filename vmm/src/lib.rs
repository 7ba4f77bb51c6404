//! duet: a VMM that runs a general-purpose Linux and a specialized kernel side by side in one VM.
//!
//! This crate is the library an embedder uses and the `duet` CLI is built on:
//!
//! ```no_run
//! let cfg = config::load(std::path::Path::new("examples/linux.toml"), &config::Overrides::default())?;
//! let outcome = vmm::Vm::new(&cfg)?.run(Some(std::time::Duration::from_secs(300)))?;
//! println!("{}", outcome.reason);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Only this crate talks to KVM. [`prepare`] reads and checks the images and plans the VM as plain
//! data ([`Plan`]); [`Vm::new`] applies the plan (guest memory, the KVM VMs, devices, vCPUs) and
//! [`Vm::run`] runs one thread per vCPU, each through the one vCPU run loop with its partition's exit
//! handler, plus the event loop, to an [`Outcome`]. Inside: `vcpu` (run loop, exit handlers,
//! registers, the PVM emulation fallback), `partitioned` (the HRT's side of a partitioned VM: its
//! lifecycle, invoke slots, events, hypercalls, doorbells), `virtio` (the ROS's virtio-mmio devices),
//! `event_loop`, and [`stats`] (KVM's per-vCPU counters at each debug-port mark).

pub mod cli;
mod error;
mod event_loop;
mod kick;
mod machine;
mod memory;
mod outcome;
mod partitioned;
mod placement;
mod plan;
mod platform;
pub mod stats;
mod vcpu;
mod virtio;
mod vm;

pub use config;
pub use error::VmmError;
pub use hvm::Partition;
pub use outcome::{ExitReason, HypercallStats, MarkAt, Outcome};
pub use plan::{prepare, HrtPlan, KernelKind, Module, Plan};
pub use platform::{cpu_model, KvmFlavor, PlatformSettings};
pub use vcpu::setup::{CpuidMask, SetupError};
pub use vcpu::{GuestFault, RegsSummary};
pub use vm::Vm;
