//! The file as written: serde structs mirroring the TOML schema, with spans
//! (for line numbers) and no semantic checks.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::model::{MAX_FORWARD_SPIN_US, MAX_VCPUS, MIN_VCPUS};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) ros: Option<Spanned<RawRos>>,
    pub(crate) hrt: Option<Spanned<RawHrt>>,
    pub(crate) console: Option<Spanned<RawConsole>>,
    pub(crate) platform: Option<Spanned<RawPlatform>>,
    pub(crate) block: Option<Spanned<Vec<Spanned<RawBlock>>>>,
    pub(crate) net: Option<Spanned<Vec<Spanned<RawNet>>>>,
    pub(crate) vsock: Option<Spanned<RawVsock>>,
}

/// `[[block]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBlock {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) read_only: Option<Spanned<bool>>,
    pub(crate) serial: Option<Spanned<String>>,
}

/// `[[net]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNet {
    pub(crate) tap: Option<Spanned<String>>,
    pub(crate) mac: Option<Spanned<String>>,
}

/// `[vsock]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVsock {
    pub(crate) cid: Option<Spanned<i64>>,
    pub(crate) socket: Option<Spanned<String>>,
}

/// `[ros]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRos {
    pub(crate) vcpus: Option<Spanned<RawCount>>,
    pub(crate) memory: Option<Spanned<RawSize>>,
    pub(crate) kernel: Option<Spanned<String>>,
    pub(crate) initramfs: Option<Spanned<String>>,
    pub(crate) cmdline: Option<Spanned<String>>,
}

/// `[hrt]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHrt {
    pub(crate) vcpus: Option<Spanned<RawCount>>,
    pub(crate) memory: Option<Spanned<RawSize>>,
    pub(crate) kernel: Option<Spanned<String>>,
    pub(crate) cmdline: Option<Spanned<String>>,
    pub(crate) modules: Option<Spanned<Vec<Spanned<RawModule>>>>,
    pub(crate) boot: Option<Spanned<RawBoot>>,
    pub(crate) forward: Option<Spanned<RawForward>>,
    pub(crate) forward_spin_us: Option<Spanned<RawMicros>>,
}

/// `hrt.modules[i]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModule {
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) cmdline: Option<Spanned<String>>,
}

/// `hrt.boot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawBoot {
    AtStart,
    OnRequest,
}

/// `hrt.forward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawForward {
    Poll,
    Notify,
    Adaptive,
}

/// `[console]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsole {
    pub(crate) output: Option<Spanned<RawOutput>>,
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) input: Option<Spanned<bool>>,
}

/// `console.output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawOutput {
    Stdio,
    Capture,
    File,
    None,
}

impl RawOutput {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RawOutput::Stdio => "stdio",
            RawOutput::Capture => "capture",
            RawOutput::File => "file",
            RawOutput::None => "none",
        }
    }
}

/// `[platform]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlatform {
    pub(crate) pvm_workarounds: Option<Spanned<RawWorkarounds>>,
    pub(crate) clearcpuid: Option<Spanned<Vec<Spanned<String>>>>,
}

/// `platform.pvm_workarounds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawWorkarounds {
    Auto,
    On,
    Off,
}

/// `ros.memory`, `hrt.memory`: a size string, or a TOML integer meaning MiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawSize {
    Text(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size string like \"256M\" or \"1G\", or an integer number of MiB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                match i64::try_from(v) {
                    Ok(v) => Ok(RawSize::Int(v)),
                    Err(_) => Ok(RawSize::Text(v.to_string())),
                }
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// `ros.vcpus`, `hrt.vcpus`: any TOML integer, so that `vcpus = -1` or `vcpus = 1000`
/// get the range message rather than serde's integer-type message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawCount(pub(crate) i64);

impl<'de> Deserialize<'de> for RawCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl Visitor<'_> for CountVisitor {
            type Value = RawCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer from {MIN_VCPUS} to {MAX_VCPUS}")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawCount, E> {
                Ok(RawCount(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawCount, E> {
                Ok(RawCount(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// `hrt.forward_spin_us`: any TOML integer, so that out-of-range values get
/// the range message (like [`RawCount`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawMicros(pub(crate) i64);

impl<'de> Deserialize<'de> for RawMicros {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MicrosVisitor;
        impl Visitor<'_> for MicrosVisitor {
            type Value = RawMicros;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an integer number of microseconds from 0 to {MAX_FORWARD_SPIN_US}"
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMicros, E> {
                Ok(RawMicros(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMicros, E> {
                Ok(RawMicros(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }
        deserializer.deserialize_any(MicrosVisitor)
    }
}

/// A string-valued enum. Deserialized by hand (rather than with serde's
/// enum support) so that a value of the wrong type gets "invalid type: ...,
/// expected one of ..." instead of the TOML deserializer's "wanted string
/// or table".
trait Keyword: Sized + Copy + 'static {
    /// The accepted strings.
    const NAMES: &'static [&'static str];
    /// The values, in the order of `NAMES`.
    const VALUES: &'static [Self];
}

impl Keyword for RawOutput {
    const NAMES: &'static [&'static str] = &["stdio", "capture", "file", "none"];
    const VALUES: &'static [Self] = &[
        RawOutput::Stdio,
        RawOutput::Capture,
        RawOutput::File,
        RawOutput::None,
    ];
}

impl Keyword for RawWorkarounds {
    const NAMES: &'static [&'static str] = &["auto", "on", "off"];
    const VALUES: &'static [Self] = &[
        RawWorkarounds::Auto,
        RawWorkarounds::On,
        RawWorkarounds::Off,
    ];
}

impl Keyword for RawBoot {
    const NAMES: &'static [&'static str] = &["at-start", "on-request"];
    const VALUES: &'static [Self] = &[RawBoot::AtStart, RawBoot::OnRequest];
}

impl Keyword for RawForward {
    const NAMES: &'static [&'static str] = &["poll", "notify", "adaptive"];
    const VALUES: &'static [Self] = &[RawForward::Poll, RawForward::Notify, RawForward::Adaptive];
}

impl<'de> Deserialize<'de> for RawForward {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_keyword(deserializer)
    }
}

impl<'de> Deserialize<'de> for RawBoot {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_keyword(deserializer)
    }
}

impl<'de> Deserialize<'de> for RawOutput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_keyword(deserializer)
    }
}

impl<'de> Deserialize<'de> for RawWorkarounds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_keyword(deserializer)
    }
}

fn deserialize_keyword<'de, D: Deserializer<'de>, K: Keyword>(
    deserializer: D,
) -> Result<K, D::Error> {
    struct KeywordVisitor<K>(std::marker::PhantomData<K>);
    impl<K: Keyword> Visitor<'_> for KeywordVisitor<K> {
        type Value = K;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("one of ")?;
            for (i, name) in K::NAMES.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "\"{name}\"")?;
            }
            Ok(())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<K, E> {
            K::NAMES
                .iter()
                .zip(K::VALUES)
                .find(|(name, _)| **name == v)
                .map(|(_, value)| *value)
                .ok_or_else(|| E::unknown_variant(v, K::NAMES))
        }
    }
    deserializer.deserialize_any(KeywordVisitor(std::marker::PhantomData))
}
