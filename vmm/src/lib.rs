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
//! Only this crate talks to KVM: [`vm`] builds the VM from plain data made by `boot` and `devices`,
//! [`vcpu`] runs one thread per vCPU (with the PVM emulation fallback in [`vcpu::emulate`]), and
//! [`event_loop`] serves console input and stop requests; [`virtio`] wires the ROS's virtio-mmio devices
//! (MMIO bus, irqfds, ioeventfds, backend descriptors).

pub mod cli;
pub mod error;
pub mod event_loop;
pub mod partitioned;
mod kick;
pub mod outcome;
pub mod plan;
pub mod platform;
pub mod stats;
pub mod vcpu;
pub mod virtio;
pub mod vm;

pub use config;
pub use error::VmmError;
pub use outcome::{ExitReason, MarkAt, Outcome};
pub use platform::{KvmFlavor, PlatformSettings};
pub use plan::{prepare, KernelKind, Plan};
pub use vm::Vm;
