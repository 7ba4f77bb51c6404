//! `hvm invoke` and the `--core N | --all` choice it shares with `merge` and `unmerge`.

use std::time::Duration;

use super::words::{arg, parse_secs, parse_u64, split, Split, Takes};
use crate::error::Error;

/// Default `--timeout` of a sync invoke.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which HRT core(s) an invoke targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One core index.
    Core(u64),
    /// Every core.
    All,
}

/// `hvm invoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeArgs {
    /// Core(s).
    pub target: Target,
    /// Do not wait (RDI = 0).
    pub asynchronous: bool,
    /// Ask for INVOKE_DONE.
    pub notify: bool,
    /// How long a sync invoke waits.
    pub timeout: Duration,
    /// The function.
    pub func: u64,
    /// Its argument.
    pub arg: u64,
}

/// `--core N` or `--all` (default core 0).
pub fn target(cmd: &str, s: &Split) -> Result<Target, Error> {
    Ok(match (s.value("core"), s.flag("all")) {
        (Some(_), true) => return Err(Error::usage(format!("{cmd}: --core and --all exclude each other"))),
        (Some(c), false) => Target::Core(parse_u64("--core", c)?),
        (None, true) => Target::All,
        (None, false) => Target::Core(0),
    })
}

/// `hvm invoke` (its arguments, without the command).
pub fn parse_invoke(rest: &[String]) -> Result<InvokeArgs, Error> {
    let cmd = "invoke";
    let s = split(
        cmd,
        rest,
        &[
            ("core", Takes::Value),
            ("all", Takes::No),
            ("async", Takes::No),
            ("notify", Takes::No),
            ("timeout", Takes::Value),
        ],
    )?;
    let pos = s.positional(cmd, 1, 2)?;
    let target = target(cmd, &s)?;
    let timeout = s.value("timeout").map(|v| parse_secs("--timeout", v)).transpose()?.unwrap_or(DEFAULT_INVOKE_TIMEOUT);
    Ok(InvokeArgs {
        target,
        asynchronous: s.flag("async"),
        notify: s.flag("notify"),
        timeout,
        func: parse_u64("FUNC", arg(pos, 0, cmd)?)?,
        arg: pos.get(1).map(|a| parse_u64("ARG", a)).transpose()?.unwrap_or(0),
    })
}
