//! The `duet` command line: `duet run CONFIG`, `duet check CONFIG`, flags that override the file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{ExitReason, KvmFlavor, Vm, VmmError};

/// Exit code for an invalid configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code for a VMM failure: KVM, memory, I/O (sysexits' EX_SOFTWARE).
pub const EXIT_VMM: u8 = 70;
/// Exit code when `--timeout` ended the VM (as timeout(1)).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the guest died: triple fault, an instruction the host's KVM cannot run.
pub const EXIT_GUEST_FAULT: u8 = 125;

/// duet: Linux and a specialized kernel side by side in one VM.
#[derive(Debug, Parser)]
#[command(name = "duet", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// duet's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot the VM a config file describes; exits with the guest's status.
    Run {
        /// The config file (TOML).
        config: PathBuf,
        /// Settings that override the file.
        #[command(flatten)]
        overrides: OverrideArgs,
        /// End the VM after this many seconds (exit code 124).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Print nothing of duet's own (the guest's console still goes where the config says).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate a config file and the images it names, without booting.
    Check {
        /// The config file (TOML).
        config: PathBuf,
        /// Settings that override the file.
        #[command(flatten)]
        overrides: OverrideArgs,
    },
}

/// Flags that override the config file.
#[derive(Debug, Args, Default)]
pub struct OverrideArgs {
    /// Number of vCPUs of the Linux partition.
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Memory of the Linux partition (e.g. 256M, 1G).
    #[arg(long)]
    pub memory: Option<String>,
    /// Kernel image (vmlinux or bzImage).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Initramfs (newc cpio).
    #[arg(long)]
    pub initramfs: Option<PathBuf>,
    /// Replace the kernel command line.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Append to the kernel command line.
    #[arg(long)]
    pub append: Option<String>,
}

impl OverrideArgs {
    fn to_overrides(&self) -> config::Overrides {
        config::Overrides {
            vcpus: self.vcpus,
            memory: self.memory.clone(),
            kernel: self.kernel.clone(),
            initramfs: self.initramfs.clone(),
            cmdline: self.cmdline.clone(),
            append: self.append.clone(),
        }
    }
}

/// Prints an error and its causes, once each.
pub fn print_error(err: &(dyn std::error::Error + 'static)) {
    eprintln!("duet: error: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
}

fn exit_for_error(err: &VmmError) -> ExitCode {
    print_error(err);
    match err {
        VmmError::Config(_)
        | VmmError::ReadImage { .. }
        | VmmError::Boot { .. }
        | VmmError::BootMultiboot2 { .. }
        | VmmError::KernelKind { .. }
        | VmmError::Layout(_)
        | VmmError::HrtBoot { .. }
        | VmmError::Block { .. }
        | VmmError::Net { .. }
        | VmmError::Vsock { .. }
        | VmmError::Unsupported(_) => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::from(EXIT_VMM),
    }
}

/// Runs the CLI; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config, overrides } => check(&config, &overrides),
        Command::Run { config, overrides, timeout, quiet } => run(&config, &overrides, timeout, quiet),
    }
}

fn load(path: &std::path::Path, overrides: &OverrideArgs) -> Result<config::Config, VmmError> {
    Ok(config::load(path, &overrides.to_overrides())?)
}

fn check(path: &std::path::Path, overrides: &OverrideArgs) -> ExitCode {
    let flavor = KvmFlavor::detect();
    let plan = load(path, overrides).and_then(|cfg| Ok((crate::prepare(&cfg, flavor)?, cfg)));
    match plan {
        Ok((plan, _cfg)) => {
            println!("{}: ok", path.display());
            let (section, kind) = match &plan.kind {
                crate::KernelKind::Linux { info, .. } => ("ros", info.format.name()),
                crate::KernelKind::Multiboot2 { .. } => ("hrt", "Multiboot2"),
            };
            println!("  {section}: {} vCPU(s), {} MiB", plan.vcpus, plan.memory >> 20);
            match &plan.kind {
                crate::KernelKind::Linux { info, initramfs_at } => {
                    println!(
                        "  kernel: {} ({kind}, loads at {:#x}..{:#x})",
                        plan.kernel_path.display(),
                        info.load_start,
                        info.load_end
                    );
                    if let Some((start, end)) = initramfs_at {
                        println!("  initramfs: {} bytes at {start:#x}..{end:#x}", end - start);
                    }
                }
                crate::KernelKind::Multiboot2 { image } => {
                    println!(
                        "  kernel: {} ({kind}, loads at {:#x}..{:#x})",
                        plan.kernel_path.display(),
                        image.load_start(),
                        image.load_end()
                    );
                    for m in &plan.modules {
                        println!("  module: {} ({} bytes) \"{}\"", m.path.display(), m.data.len(), m.string);
                    }
                }
            }
            println!("  cmdline: {}", plan.cmdline);
            if let Some(hrt) = &plan.hrt {
                let l = &hrt.layout;
                println!(
                    "  hrt: {} vCPU(s), {} MiB at {:#x}..{:#x} (partitioned VM; boots {})",
                    hrt.vcpus,
                    l.hrt_ram.len >> 20,
                    l.hrt_base(),
                    l.hrt_ram.end(),
                    if hrt.boot == config::HrtBoot::AtStart { "at start" } else { "on request" }
                );
                println!(
                    "  hrt kernel: {} (Multiboot2, {} entry)",
                    hrt.kernel_path.display(),
                    if hrt.entry64() { "64-bit HVM" } else { "32-bit" }
                );
                for m in &hrt.modules {
                    println!("  hrt module: {} ({} bytes) \"{}\"", m.path.display(), m.data.len(), m.string);
                }
                println!("  hrt cmdline: {}", hrt.cmdline);
                match hrt.forward {
                    abi::ForwardMode::Adaptive => {
                        println!(
                            "  hrt forwarding: adaptive (spin {} us, then sleep on the doorbells)",
                            hrt.forward_spin_us
                        )
                    }
                    mode => println!("  hrt forwarding: {}", mode.name()),
                }
            }
            println!("  host: {flavor}; PVM workarounds {}", if plan.platform.workarounds { "on" } else { "off" });
            ExitCode::SUCCESS
        }
        Err(e) => exit_for_error(&e),
    }
}

fn run(path: &std::path::Path, overrides: &OverrideArgs, timeout: Option<f64>, quiet: bool) -> ExitCode {
    let timeout = match timeout.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            eprintln!("duet: error: --timeout must be a positive number of seconds");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let vm = match load(path, overrides).and_then(|cfg| Vm::new(&cfg)) {
        Ok(vm) => vm,
        Err(e) => return exit_for_error(&e),
    };
    if !quiet {
        eprintln!("duet: {} on {}", vm.plan().platform.flavor, crate::cpu_model());
    }
    let outcome = match vm.run(timeout) {
        Ok(o) => o,
        Err(e) => return exit_for_error(&e),
    };
    if !quiet {
        let init = outcome
            .mark(devices::debug_port::MARK_INIT)
            .map(|t| format!("; init reached after {:.3} s", t.as_secs_f64()))
            .unwrap_or_default();
        eprintln!("duet: {} after {:.3} s ({}{init})", outcome.reason, outcome.elapsed.as_secs_f64(), outcome.flavor.module());
        if let Some(h) = &outcome.hypercalls {
            eprintln!("duet: {h}");
        }
        if outcome.reason == ExitReason::Timeout {
            for (id, regs) in &outcome.vcpu_regs {
                eprintln!("duet: vCPU {id} stopped at {regs}");
            }
        }
    }
    match outcome.reason {
        ExitReason::Exit(status) => ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX)),
        ExitReason::Reset => ExitCode::SUCCESS,
        ExitReason::Timeout => ExitCode::from(EXIT_TIMEOUT),
        ExitReason::Fault(_) => ExitCode::from(EXIT_GUEST_FAULT),
    }
}
