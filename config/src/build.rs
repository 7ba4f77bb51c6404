//! A file's raw sections, with the command-line overrides applied, → the model and the [`Spans`] of
//! its fields.
//!
//! Only what the model cannot hold is refused here: a missing required key, a value that does not
//! fit the model's type (a size that does not parse, `vcpus = -1`), `--initramfs` for a VM with no
//! `[ros]`, a console path that does not go with its output. Every other rule is checked on the
//! model afterwards ([`crate::rules`]), the same way as for a config built in code.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::build_devices::build_devices;
use crate::error::{ConfigError, Location, Problem};
use crate::model::{
    Config, ConsoleConfig, ConsoleOutput, DevicesConfig, ForwardMode, HrtBoot, HrtConfig,
    ModuleConfig, PlatformConfig, RosConfig, Workarounds, DEFAULT_FORWARD_SPIN_US, DEFAULT_MEMORY,
    DEFAULT_VCPUS,
};
use crate::overrides::Overrides;
use crate::paths::resolve;
use crate::raw::{
    RawBoot, RawConfig, RawConsole, RawCount, RawForward, RawHrt, RawModule, RawOutput,
    RawPlatform, RawRos, RawSize, RawWorkarounds,
};
use crate::size::{parse_size, SizeError, MIB};
use crate::source::Source;
use crate::spans::{invalid, Spans};

/// The model of the file `raw` (read from `src`) with `ov` applied, and where its fields came
/// from.
pub(crate) fn build(
    src: &Source<'_>,
    raw: RawConfig,
    ov: &Overrides,
) -> Result<(Config, Spans), ConfigError> {
    let mut spans = Spans::with_fallback(src.file());
    let (ros, hrt) = match (raw.ros, raw.hrt) {
        // A partitioned VM: command-line overrides apply to the Linux partition.
        (Some(ros), Some(hrt)) => {
            let span = ros.span();
            let ros = build_ros(src, Some(span), ros.into_inner(), ov, &mut spans)?;
            let hrt = build_hrt(src, hrt, &Overrides::default(), &mut spans)?;
            (Some(ros), Some(hrt))
        }
        (Some(ros), None) => {
            let span = ros.span();
            (
                Some(build_ros(
                    src,
                    Some(span),
                    ros.into_inner(),
                    ov,
                    &mut spans,
                )?),
                None,
            )
        }
        (None, Some(hrt)) => (None, Some(build_hrt(src, hrt, ov, &mut spans)?)),
        (None, None) if ov.kernel.is_some() => {
            let ros = build_ros(src, None, RawRos::default(), ov, &mut spans)?;
            (Some(ros), None)
        }
        // Nothing to describe: the rules refuse a VM without partitions before they would look
        // at anything else, so the rest of the file is not read.
        (None, None) => return Ok((empty(src), spans)),
    };
    let devices = build_devices(src, raw.block, raw.net, raw.vsock, &mut spans)?;
    let console = build_console(src, raw.console, &mut spans)?;
    let platform = build_platform(src, raw.platform, &mut spans);
    let config = Config {
        source: src.origin.to_path_buf(),
        ros,
        hrt,
        console,
        platform,
        devices,
    };
    Ok((config, spans))
}

/// A config of `src` without partitions.
fn empty(src: &Source<'_>) -> Config {
    Config {
        source: src.origin.to_path_buf(),
        ros: None,
        hrt: None,
        console: ConsoleConfig::default(),
        platform: PlatformConfig::default(),
        devices: DevicesConfig::default(),
    }
}

/// Where a chosen value came from.
#[derive(Clone)]
enum Src {
    Cli(&'static str),
    File(Range<usize>),
    /// Not given anywhere: the enclosing table (for "missing" errors), if
    /// it is in the file.
    Table(Option<Range<usize>>),
}

impl Source<'_> {
    fn loc(&self, from: &Src) -> Location {
        match from {
            Src::Cli(option) => Location::CommandLine { option },
            Src::File(span) | Src::Table(Some(span)) => self.at(span.clone()),
            Src::Table(None) => self.file(),
        }
    }
}

/// Picks the command-line value if given, else the file's.
fn pick<C, F, T>(
    cli: Option<C>,
    option: &'static str,
    file: Option<Spanned<F>>,
    from_cli: impl FnOnce(C) -> T,
    from_file: impl FnOnce(F) -> T,
) -> Option<(T, Src)> {
    match (cli, file) {
        (Some(c), _) => Some((from_cli(c), Src::Cli(option))),
        (None, Some(f)) => {
            let span = f.span();
            Some((from_file(f.into_inner()), Src::File(span)))
        }
        (None, None) => None,
    }
}

fn raw_size(raw: RawSize) -> Result<u64, SizeError> {
    match raw {
        RawSize::Text(s) => parse_size(&s),
        RawSize::Int(i) => match u64::try_from(i) {
            Ok(n) => n.checked_mul(MIB).ok_or(SizeError::Overflow {
                input: i.to_string(),
            }),
            Err(_) => Err(SizeError::Invalid {
                input: i.to_string(),
            }),
        },
    }
}

/// The keys `[ros]` and `[hrt]` share, as written.
struct RawCommon {
    vcpus: Option<Spanned<RawCount>>,
    memory: Option<Spanned<RawSize>>,
    kernel: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
}

/// The keys `[ros]` and `[hrt]` share, with the overrides applied.
struct Common {
    vcpus: u32,
    memory: u64,
    kernel: PathBuf,
    cmdline: String,
}

/// A chosen input-file path (kernel, initramfs), resolved: a file path against the file's
/// directory, a command-line one against the current directory.
fn input_path(
    src: &Source<'_>,
    cli: Option<PathBuf>,
    option: &'static str,
    file: Option<Spanned<String>>,
) -> Option<(PathBuf, Src)> {
    pick(
        cli,
        option,
        file,
        |p| (p, Path::new("")),
        |s| (PathBuf::from(s), src.base),
    )
    .map(|((path, base), from)| (resolve(base, &path), from))
}

/// vcpus, memory, kernel and cmdline (+ `--append`) of the partition
/// `part` (`ros` or `hrt`), whose table is at `table` (if in the file).
fn build_common(
    src: &Source<'_>,
    part: &str,
    table: Option<Range<usize>>,
    raw: RawCommon,
    ov: &Overrides,
    spans: &mut Spans,
) -> Result<Common, ConfigError> {
    let field = |key: &str| format!("{part}.{key}");

    let vcpus = match pick(ov.vcpus, "--vcpus", raw.vcpus, i64::from, |v| v.0) {
        Some((value, from)) => {
            let at = src.loc(&from);
            spans.set(field("vcpus"), at.clone());
            // Beyond u32 is out of range for the rules' range too.
            u32::try_from(value)
                .map_err(|_| invalid(at, field("vcpus"), Problem::VcpusOutOfRange { value }))?
        }
        None => DEFAULT_VCPUS,
    };

    let memory = pick(
        ov.memory.clone(),
        "--memory",
        raw.memory,
        |s| parse_size(&s),
        raw_size,
    );
    let memory = match memory {
        Some((bytes, from)) => {
            let at = src.loc(&from);
            spans.set(field("memory"), at.clone());
            bytes.map_err(|e| invalid(at, field("memory"), Problem::from(e)))?
        }
        None => DEFAULT_MEMORY,
    };

    let kernel = match input_path(src, ov.kernel.clone(), "--kernel", raw.kernel) {
        Some((path, from)) => {
            spans.set(field("kernel"), src.loc(&from));
            path
        }
        None => {
            let problem = if part == "ros" {
                Problem::MissingKernel
            } else {
                Problem::MissingHrtKernel
            };
            return Err(invalid(
                src.loc(&Src::Table(table)),
                field("kernel"),
                problem,
            ));
        }
    };

    let cmdline = build_cmdline(src, &field("cmdline"), raw.cmdline, ov, spans);
    Ok(Common {
        vcpus,
        memory,
        kernel,
        cmdline,
    })
}

/// The command line (the file's or `--cmdline`), then `--append` after a space; the spans record
/// where each part came from.
fn build_cmdline(
    src: &Source<'_>,
    field: &str,
    file: Option<Spanned<String>>,
    ov: &Overrides,
    spans: &mut Spans,
) -> String {
    let mut cmdline = String::new();
    if let Some((base, from)) = pick(ov.cmdline.clone(), "--cmdline", file, |s| s, |s| s) {
        spans.add_part(field, 0..base.len(), src.loc(&from));
        cmdline = base;
    }
    if let Some(append) = &ov.append {
        if !append.is_empty() && !cmdline.is_empty() {
            cmdline.push(' ');
        }
        let start = cmdline.len();
        cmdline.push_str(append);
        let at = Location::CommandLine { option: "--append" };
        spans.add_part(field, start..cmdline.len(), at);
    }
    cmdline
}

fn build_ros(
    src: &Source<'_>,
    table: Option<Range<usize>>,
    ros: RawRos,
    ov: &Overrides,
    spans: &mut Spans,
) -> Result<RosConfig, ConfigError> {
    let common = RawCommon {
        vcpus: ros.vcpus,
        memory: ros.memory,
        kernel: ros.kernel,
        cmdline: ros.cmdline,
    };
    let Common {
        vcpus,
        memory,
        kernel,
        cmdline,
    } = build_common(src, "ros", table, common, ov, spans)?;
    let initramfs =
        input_path(src, ov.initramfs.clone(), "--initramfs", ros.initramfs).map(|(path, from)| {
            spans.set("ros.initramfs", src.loc(&from));
            path
        });
    Ok(RosConfig {
        vcpus,
        memory,
        kernel,
        initramfs,
        cmdline,
    })
}

/// `[hrt]`; `ov` is the command line's overrides for an HRT-only VM, none beside a `[ros]`.
fn build_hrt(
    src: &Source<'_>,
    raw: Spanned<RawHrt>,
    ov: &Overrides,
    spans: &mut Spans,
) -> Result<HrtConfig, ConfigError> {
    if ov.initramfs.is_some() {
        let at = Location::CommandLine {
            option: "--initramfs",
        };
        return Err(invalid(at, "ros.initramfs", Problem::InitramfsWithoutRos));
    }
    let table = raw.span();
    let hrt = raw.into_inner();
    let common = RawCommon {
        vcpus: hrt.vcpus,
        memory: hrt.memory,
        kernel: hrt.kernel,
        cmdline: hrt.cmdline,
    };
    let Common {
        vcpus,
        memory,
        kernel,
        cmdline,
    } = build_common(src, "hrt", Some(table), common, ov, spans)?;
    let modules = match hrt.modules {
        Some(list) => build_modules(src, list, spans)?,
        None => Vec::new(),
    };

    let boot = match hrt.boot {
        None => HrtBoot::AtStart,
        Some(b) => {
            spans.set("hrt.boot", src.at(b.span()));
            match b.into_inner() {
                RawBoot::AtStart => HrtBoot::AtStart,
                RawBoot::OnRequest => HrtBoot::OnRequest,
            }
        }
    };
    let forward = match hrt.forward.map(Spanned::into_inner) {
        None | Some(RawForward::Poll) => ForwardMode::Poll,
        Some(RawForward::Notify) => ForwardMode::Notify,
        Some(RawForward::Adaptive) => ForwardMode::Adaptive,
    };
    let forward_spin_us = match hrt.forward_spin_us {
        None => DEFAULT_FORWARD_SPIN_US,
        Some(spin) => {
            let at = src.at(spin.span());
            spans.set("hrt.forward_spin_us", at.clone());
            let value = spin.into_inner().0;
            // Beyond u32 is out of range for the rules' range too.
            u32::try_from(value).map_err(|_| {
                let problem = Problem::ForwardSpinOutOfRange { value };
                invalid(at, "hrt.forward_spin_us", problem)
            })?
        }
    };

    Ok(HrtConfig {
        vcpus,
        memory,
        kernel,
        cmdline,
        modules,
        boot,
        forward,
        forward_spin_us,
    })
}

/// `hrt.modules`.
fn build_modules(
    src: &Source<'_>,
    list: Spanned<Vec<Spanned<RawModule>>>,
    spans: &mut Spans,
) -> Result<Vec<ModuleConfig>, ConfigError> {
    spans.set("hrt.modules", src.at(list.span()));
    let mut modules = Vec::new();
    for (i, module) in list.into_inner().into_iter().enumerate() {
        let module_span = module.span();
        let module = module.into_inner();
        let field = format!("hrt.modules[{i}].path");
        let Some(path) = module.path else {
            return Err(invalid(
                src.at(module_span),
                field,
                Problem::MissingModulePath,
            ));
        };
        spans.set(field, src.at(path.span()));
        let path = resolve(src.base, Path::new(path.get_ref()));
        let cmdline = match module.cmdline {
            None => String::new(),
            Some(c) => {
                spans.set(format!("hrt.modules[{i}].cmdline"), src.at(c.span()));
                c.into_inner()
            }
        };
        modules.push(ModuleConfig { path, cmdline });
    }
    Ok(modules)
}

fn build_console(
    src: &Source<'_>,
    raw: Option<Spanned<RawConsole>>,
    spans: &mut Spans,
) -> Result<ConsoleConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ConsoleConfig::default());
    };
    let table_span = raw.span();
    let raw = raw.into_inner();
    let (kind, kind_span) = match raw.output {
        Some(o) => (*o.get_ref(), o.span()),
        None => (RawOutput::Stdio, table_span),
    };
    let output = match (kind, raw.path) {
        (RawOutput::File, None) => {
            let at = src.at(kind_span);
            return Err(invalid(at, "console.path", Problem::ConsolePathMissing));
        }
        (RawOutput::File, Some(path)) => {
            spans.set("console.path", src.at(path.span()));
            ConsoleOutput::File(resolve(src.base, Path::new(path.get_ref())))
        }
        (other, Some(path)) => {
            let problem = Problem::ConsolePathForbidden {
                output: other.name(),
            };
            return Err(invalid(src.at(path.span()), "console.path", problem));
        }
        (RawOutput::Stdio, None) => ConsoleOutput::Stdio,
        (RawOutput::Capture, None) => ConsoleOutput::Capture,
        (RawOutput::None, None) => ConsoleOutput::None,
    };
    Ok(ConsoleConfig {
        output,
        input: raw.input.is_none_or(Spanned::into_inner),
    })
}

fn build_platform(
    src: &Source<'_>,
    raw: Option<Spanned<RawPlatform>>,
    spans: &mut Spans,
) -> PlatformConfig {
    let Some(raw) = raw else {
        return PlatformConfig::default();
    };
    let raw = raw.into_inner();
    let pvm_workarounds = match raw.pvm_workarounds.map(Spanned::into_inner) {
        None | Some(RawWorkarounds::Auto) => Workarounds::Auto,
        Some(RawWorkarounds::On) => Workarounds::On,
        Some(RawWorkarounds::Off) => Workarounds::Off,
    };
    let clearcpuid = raw.clearcpuid.map(|list| {
        let entries = list.into_inner().into_iter().enumerate();
        entries
            .map(|(i, entry)| {
                spans.set(format!("platform.clearcpuid[{i}]"), src.at(entry.span()));
                entry.into_inner()
            })
            .collect()
    });
    PlatformConfig {
        pvm_workarounds,
        clearcpuid,
    }
}
