//! The words of a command line: options and positional arguments, numbers, seconds. Every
//! subcommand's parser (the parent module) splits its arguments with [`split`].

use std::time::Duration;

use crate::error::Error;

/// Whether an option takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// A flag.
    No,
    /// `--name VALUE` or `--name=VALUE`.
    Value,
    /// Like [`Takes::Value`], but the next argument is taken only if it is a number (`--wait` alone
    /// means the default).
    Number,
}

/// Options and positional arguments of one subcommand.
pub struct Split {
    opts: Vec<(&'static str, Option<String>)>,
    pos: Vec<String>,
}

impl Split {
    /// The last value given for option `name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref())
    }

    /// Whether flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// Checks the number of positional arguments.
    pub fn positional(&self, cmd: &str, min: usize, max: usize) -> Result<&[String], Error> {
        if self.pos.len() < min || self.pos.len() > max {
            let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(Error::usage(format!("{cmd}: expected {want} argument(s), got {}", self.pos.len())));
        }
        Ok(&self.pos)
    }
}

/// Splits `args` into options (from `spec`) and positional arguments. `--` ends the options; a
/// lone `-1` is positional (negative numbers for `raw`).
pub fn split(cmd: &str, args: &[String], spec: &[(&'static str, Takes)]) -> Result<Split, Error> {
    let mut s = Split { opts: Vec::new(), pos: Vec::new() };
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            s.pos.extend(it.cloned());
            break;
        }
        let Some(body) = a.strip_prefix("--") else {
            s.pos.push(a.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(&(known, takes)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(Error::usage(format!("{cmd}: unknown option --{name}")));
        };
        let value = match (takes, inline) {
            (Takes::Value | Takes::Number, Some(v)) => Some(v),
            (Takes::Value, None) => match it.next() {
                Some(v) => Some(v.clone()),
                None => return Err(Error::usage(format!("{cmd}: --{name} needs a value"))),
            },
            (Takes::Number, None) => it.next_if(|v| v.trim().parse::<f64>().is_ok()).cloned(),
            (Takes::No, Some(_)) => return Err(Error::usage(format!("{cmd}: --{name} takes no value"))),
            (Takes::No, None) => None,
        };
        s.opts.push((known, value));
    }
    Ok(s)
}

/// Parses a number: decimal or `0x` hex, `_` allowed as a separator.
pub fn parse_u64(what: &str, s: &str) -> Result<u64, Error> {
    let t: String = s.trim().chars().filter(|c| *c != '_').collect();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| Error::usage(format!("{what}: not a number: {s:?}")))
}

/// Like [`parse_u64`], also taking `-N` (two's complement), for `raw`.
pub fn parse_raw(what: &str, s: &str) -> Result<u64, Error> {
    match s.trim().strip_prefix('-') {
        Some(rest) => Ok(parse_u64(what, rest)?.wrapping_neg()),
        None => parse_u64(what, s),
    }
}

/// Parses seconds (`2`, `0.5`) into a duration; at most a day.
pub fn parse_secs(what: &str, s: &str) -> Result<Duration, Error> {
    let bad = || Error::usage(format!("{what}: not a number of seconds (0 to 86400): {s:?}"));
    let secs: f64 = s.trim().parse().map_err(|_| bad())?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// The positional argument at `i`, or a usage error (never an out-of-bounds panic).
pub fn arg<'a>(pos: &'a [String], i: usize, cmd: &str) -> Result<&'a str, Error> {
    pos.get(i).map(String::as_str).ok_or_else(|| Error::usage(format!("{cmd}: missing argument")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_decimal_hex_and_separators() {
        assert_eq!(parse_u64("x", "42").ok(), Some(42));
        assert_eq!(parse_u64("x", "0x2A").ok(), Some(42));
        assert_eq!(parse_u64("x", "0xffff_ffff_ffff_ffff").ok(), Some(u64::MAX));
        for bad in ["", "0x", "-1", "1.5", "0x1g", "18446744073709551616", "abc"] {
            assert!(parse_u64("x", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_raw("x", "-1").ok(), Some(u64::MAX));
        assert_eq!(parse_raw("x", "-0x3").ok(), Some(3u64.wrapping_neg()));
    }

    #[test]
    fn seconds_reject_nonsense() {
        assert_eq!(parse_secs("s", "0.5").ok(), Some(Duration::from_millis(500)));
        for bad in ["-1", "nan", "inf", "1e300", "x", ""] {
            assert!(parse_secs("s", bad).is_err(), "{bad}");
        }
    }
}
