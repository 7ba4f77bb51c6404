//! Text -> raw -> overrides -> validated [`Config`].

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{ConfigError, Location, Problem};
use crate::model::{
    Config, ConsoleConfig, ConsoleOutput, ForwardMode, HrtBoot, HrtConfig, ModuleConfig,
    PlatformConfig, RosConfig, Workarounds, DEFAULT_FORWARD_SPIN_US, DEFAULT_MEMORY, DEFAULT_VCPUS,
};
use crate::raw::{
    RawBoot, RawConfig, RawCount, RawForward, RawHrt, RawOutput, RawRos, RawSize, RawWorkarounds,
};
use crate::size::{parse_size, SizeError, MIB};
use crate::validate::{
    check_cmdline_chars, check_cmdline_len, check_console_path, check_feature, check_forward_spin,
    check_input_file, check_memory, check_module_cmdline, check_module_count, check_vcpus, resolve,
};

/// Command-line overrides, applied on top of the file before validation.
/// `None` keeps the file's value.
///
/// They target the VM's one partition: `[ros]` if the file has it, else
/// `[hrt]` (where `--initramfs` is an error). With `--kernel`, a file with
/// neither section describes a Linux (`[ros]`) VM.
///
/// Override paths are relative to the current directory (not the config
/// file's); errors in overridden values are reported as
/// `command line (--memory)` etc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overrides {
    /// `--vcpus`: replaces `ros.vcpus` / `hrt.vcpus`.
    pub vcpus: Option<u32>,
    /// `--memory`: replaces `ros.memory` / `hrt.memory` (same size syntax).
    pub memory: Option<String>,
    /// `--kernel`: replaces `ros.kernel` / `hrt.kernel`; with it, a file
    /// with neither `[ros]` nor `[hrt]` is accepted (as a `[ros]` VM).
    pub kernel: Option<PathBuf>,
    /// `--initramfs`: replaces `ros.initramfs`; an error for an `[hrt]`
    /// VM.
    pub initramfs: Option<PathBuf>,
    /// `--cmdline`: replaces `ros.cmdline` / `hrt.cmdline`.
    pub cmdline: Option<String>,
    /// `--append`: appended to the (possibly overridden) command line,
    /// separated by a space.
    pub append: Option<String>,
}

/// Reads the config file at `path`, then [`parse`]s it.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        kind: e.kind(),
        message: e.to_string(),
    })?;
    parse(&text, path, overrides)
}

/// Parses config `text`, applies `overrides` and validates the result
/// (including that the kernel, initramfs and module files exist, are
/// regular, readable and, but for modules, non-empty).
///
/// `origin` is the file the text came from: it names the file in error
/// messages, and its directory is the base for relative paths in the file.
pub fn parse(text: &str, origin: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let cx = Cx {
        text,
        origin,
        base: origin.parent().unwrap_or(Path::new("")),
    };
    let doc = DeTable::parse(text).map_err(|e| cx.toml_error(&e, None))?;
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| cx.toml_error(&e, Some(doc.get_ref())))?;
    build(&cx, raw, overrides)
}

/// Where the text came from.
pub(crate) struct Cx<'a> {
    text: &'a str,
    origin: &'a Path,
    pub(crate) base: &'a Path,
}

impl Cx<'_> {
    /// The location of a byte span of the text.
    pub(crate) fn at(&self, span: Range<usize>) -> Location {
        let end = span.start.min(self.text.len());
        let line = 1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Location::File {
            path: self.origin.to_path_buf(),
            line: Some(line),
        }
    }

    /// The file, without a line.
    fn file(&self) -> Location {
        Location::File {
            path: self.origin.to_path_buf(),
            line: None,
        }
    }

    pub(crate) fn invalid(&self, location: Location, field: &str, problem: Problem) -> ConfigError {
        ConfigError::Invalid {
            location,
            field: field.to_string(),
            problem: Box::new(problem),
        }
    }

    fn toml_error(&self, e: &toml::de::Error, doc: Option<&DeTable<'_>>) -> ConfigError {
        let span = e.span();
        let location = match &span {
            Some(span) => self.at(span.clone()),
            None => self.file(),
        };
        let field = match (doc, span) {
            (Some(doc), Some(span)) => field_at(doc, &span, ""),
            _ => None,
        };
        // Messages may span lines; keep errors to one line.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Toml {
            location,
            field,
            message,
        }
    }
}

/// The dotted path of the deepest key whose key or value contains `span`.
fn field_at(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    let contains = |s: Range<usize>| s.start <= span.start && span.end <= s.end;
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        if let Some(found) = field_in_value(value, span, &path) {
            return Some(found);
        }
        if contains(key.span()) || contains(value.span()) {
            return Some(path);
        }
    }
    None
}

fn field_in_value(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &str) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => field_at(t, span, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            field_in_value(item, span, &item_path).or_else(|| {
                let s = item.span();
                (s.start <= span.start && span.end <= s.end).then_some(item_path)
            })
        }),
        _ => None,
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

impl Cx<'_> {
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

fn build(cx: &Cx<'_>, raw: RawConfig, ov: &Overrides) -> Result<Config, ConfigError> {
    let (ros, hrt) = match (raw.ros, raw.hrt) {
        // A partitioned VM: command-line overrides apply to the Linux partition.
        (Some(ros), Some(hrt)) => {
            let span = ros.span();
            let ros = build_ros(cx, Some(span), ros.into_inner(), ov)?;
            (Some(ros), Some(build_hrt(cx, hrt, &Overrides::default(), true)?))
        }
        (Some(ros), None) => {
            let span = ros.span();
            (Some(build_ros(cx, Some(span), ros.into_inner(), ov)?), None)
        }
        (None, Some(hrt)) => (None, Some(build_hrt(cx, hrt, ov, false)?)),
        (None, None) if ov.kernel.is_some() => {
            (Some(build_ros(cx, None, RawRos::default(), ov)?), None)
        }
        (None, None) => {
            return Err(cx.invalid(cx.file(), "ros/hrt", Problem::MissingPartition));
        }
    };
    let devices = crate::devices::build(cx, raw.block, raw.net, raw.vsock, ros.is_some())?;
    let console = build_console(cx, raw.console)?;
    let platform = build_platform(cx, raw.platform)?;
    Ok(Config {
        source: cx.origin.to_path_buf(),
        ros,
        hrt,
        console,
        platform,
        devices,
    })
}

/// The keys `[ros]` and `[hrt]` share, as written.
struct RawCommon {
    vcpus: Option<Spanned<RawCount>>,
    memory: Option<Spanned<RawSize>>,
    kernel: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
}

/// The keys `[ros]` and `[hrt]` share, with the overrides applied and
/// checked.
struct Common {
    vcpus: u32,
    memory: u64,
    kernel: PathBuf,
    cmdline: String,
}

/// A path as written and the directory it is relative to.
type PathChoice<'a> = Option<((PathBuf, &'a Path), Src)>;

/// Resolves and checks a chosen input-file path; `None` if not given.
fn input_path(
    cx: &Cx<'_>,
    what: &'static str,
    field: &str,
    chosen: PathChoice<'_>,
    allow_empty: bool,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(((path, base), from)) = chosen else {
        return Ok(None);
    };
    let fail = |p| cx.invalid(cx.loc(&from), field, p);
    if path.as_os_str().is_empty() {
        return Err(fail(Problem::EmptyPath { what }));
    }
    let resolved = resolve(base, &path);
    check_input_file(what, &resolved, allow_empty).map_err(fail)?;
    Ok(Some(resolved))
}

/// vcpus, memory, kernel and cmdline (+ `--append`) of the partition
/// `part` (`ros` or `hrt`), whose table is at `table` (if in the file).
fn build_common(
    cx: &Cx<'_>,
    part: &str,
    table: Option<Range<usize>>,
    raw: RawCommon,
    ov: &Overrides,
    missing_kernel: Problem,
) -> Result<Common, ConfigError> {
    let fail = |from: &Src, field: &str, p: Problem| cx.invalid(cx.loc(from), field, p);
    let field = |key: &str| format!("{part}.{key}");

    let vcpus = match pick(ov.vcpus, "--vcpus", raw.vcpus, i64::from, |v| v.0) {
        Some((v, from)) => check_vcpus(v).map_err(|p| fail(&from, &field("vcpus"), p))?,
        None => DEFAULT_VCPUS,
    };

    let memory = match pick(
        ov.memory.clone(),
        "--memory",
        raw.memory,
        |s| parse_size(&s),
        raw_size,
    ) {
        Some((bytes, from)) => bytes
            .map_err(Problem::from)
            .and_then(check_memory)
            .map_err(|p| fail(&from, &field("memory"), p))?,
        None => DEFAULT_MEMORY,
    };

    let kernel = pick(
        ov.kernel.clone(),
        "--kernel",
        raw.kernel,
        |p| (p, Path::new("")),
        |s| (PathBuf::from(s), cx.base),
    );
    let kernel = match input_path(cx, "kernel", &field("kernel"), kernel, false)? {
        Some(k) => k,
        None => return Err(fail(&Src::Table(table), &field("kernel"), missing_kernel)),
    };

    let mut cmdline = String::new();
    if let Some((base, from)) = pick(ov.cmdline.clone(), "--cmdline", raw.cmdline, |s| s, |s| s) {
        check_cmdline_chars(&base).map_err(|p| fail(&from, &field("cmdline"), p))?;
        check_cmdline_len(&base).map_err(|p| fail(&from, &field("cmdline"), p))?;
        cmdline = base;
    }
    if let Some(append) = &ov.append {
        let from = Src::Cli("--append");
        check_cmdline_chars(append).map_err(|p| fail(&from, &field("cmdline"), p))?;
        if !append.is_empty() {
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str(append);
        }
        check_cmdline_len(&cmdline).map_err(|p| fail(&from, &field("cmdline"), p))?;
    }

    Ok(Common {
        vcpus,
        memory,
        kernel,
        cmdline,
    })
}

fn build_ros(
    cx: &Cx<'_>,
    table: Option<Range<usize>>,
    ros: RawRos,
    ov: &Overrides,
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
    } = build_common(cx, "ros", table, common, ov, Problem::MissingKernel)?;
    let initramfs = pick(
        ov.initramfs.clone(),
        "--initramfs",
        ros.initramfs,
        |p| (p, Path::new("")),
        |s| (PathBuf::from(s), cx.base),
    );
    let initramfs = input_path(cx, "initramfs", "ros.initramfs", initramfs, false)?;
    Ok(RosConfig {
        vcpus,
        memory,
        kernel,
        initramfs,
        cmdline,
    })
}

/// `[hrt]`, for a VM without `[ros]`.
fn build_hrt(cx: &Cx<'_>, raw: Spanned<RawHrt>, ov: &Overrides, has_ros: bool) -> Result<HrtConfig, ConfigError> {
    if ov.initramfs.is_some() {
        return Err(cx.invalid(
            Location::CommandLine {
                option: "--initramfs",
            },
            "ros.initramfs",
            Problem::InitramfsWithoutRos,
        ));
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
    } = build_common(
        cx,
        "hrt",
        Some(table),
        common,
        ov,
        Problem::MissingHrtKernel,
    )?;

    let mut modules = Vec::new();
    if let Some(list) = hrt.modules {
        let span = list.span();
        let list = list.into_inner();
        check_module_count(list.len()).map_err(|p| cx.invalid(cx.at(span), "hrt.modules", p))?;
        for (i, module) in list.into_iter().enumerate() {
            let module_span = module.span();
            let module = module.into_inner();
            let field = format!("hrt.modules[{i}].path");
            let chosen = module.path.map(|p| {
                let span = p.span();
                ((PathBuf::from(p.into_inner()), cx.base), Src::File(span))
            });
            let Some(path) = input_path(cx, "module", &field, chosen, true)? else {
                return Err(cx.invalid(cx.at(module_span), &field, Problem::MissingModulePath));
            };
            let cmdline = match module.cmdline {
                None => String::new(),
                Some(c) => {
                    check_module_cmdline(c.get_ref()).map_err(|p| {
                        cx.invalid(cx.at(c.span()), &format!("hrt.modules[{i}].cmdline"), p)
                    })?;
                    c.into_inner()
                }
            };
            modules.push(ModuleConfig { path, cmdline });
        }
    }

    let boot = match hrt.boot {
        None => HrtBoot::AtStart,
        Some(b) => match *b.get_ref() {
            RawBoot::AtStart => HrtBoot::AtStart,
            RawBoot::OnRequest if has_ros => HrtBoot::OnRequest,
            RawBoot::OnRequest => {
                return Err(cx.invalid(cx.at(b.span()), "hrt.boot", Problem::OnRequestWithoutRos))
            }
        },
    };

    let forward = match hrt.forward.map(Spanned::into_inner) {
        None | Some(RawForward::Poll) => ForwardMode::Poll,
        Some(RawForward::Notify) => ForwardMode::Notify,
        Some(RawForward::Adaptive) => ForwardMode::Adaptive,
    };
    let forward_spin_us = match hrt.forward_spin_us {
        None => DEFAULT_FORWARD_SPIN_US,
        Some(spin) => check_forward_spin(spin.get_ref().0)
            .map_err(|p| cx.invalid(cx.at(spin.span()), "hrt.forward_spin_us", p))?,
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

fn build_console(
    cx: &Cx<'_>,
    raw: Option<Spanned<crate::raw::RawConsole>>,
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
            return Err(cx.invalid(
                cx.at(kind_span),
                "console.path",
                Problem::ConsolePathMissing,
            ))
        }
        (RawOutput::File, Some(path)) => {
            let fail = |p| cx.invalid(cx.at(path.span()), "console.path", p);
            if path.get_ref().is_empty() {
                return Err(fail(Problem::EmptyPath { what: "console" }));
            }
            let resolved = resolve(cx.base, Path::new(path.get_ref()));
            check_console_path(&resolved).map_err(fail)?;
            ConsoleOutput::File(resolved)
        }
        (other, Some(path)) => {
            return Err(cx.invalid(
                cx.at(path.span()),
                "console.path",
                Problem::ConsolePathForbidden {
                    output: other.name(),
                },
            ))
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
    cx: &Cx<'_>,
    raw: Option<Spanned<crate::raw::RawPlatform>>,
) -> Result<PlatformConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(PlatformConfig::default());
    };
    let raw = raw.into_inner();
    let pvm_workarounds = match raw.pvm_workarounds.map(Spanned::into_inner) {
        None | Some(RawWorkarounds::Auto) => Workarounds::Auto,
        Some(RawWorkarounds::On) => Workarounds::On,
        Some(RawWorkarounds::Off) => Workarounds::Off,
    };
    let clearcpuid = match raw.clearcpuid {
        None => None,
        Some(list) => {
            let mut names = Vec::new();
            for (i, entry) in list.into_inner().into_iter().enumerate() {
                check_feature(entry.get_ref()).map_err(|p| {
                    cx.invalid(cx.at(entry.span()), &format!("platform.clearcpuid[{i}]"), p)
                })?;
                names.push(entry.into_inner());
            }
            Some(names)
        }
    };
    Ok(PlatformConfig {
        pvm_workarounds,
        clearcpuid,
    })
}
