//! Memory size strings: `"256M"`, `"1G"`, `"512MiB"`, `"64K"`, or a bare
//! integer meaning MiB (`"256"`).

use std::fmt;

/// One KiB (1024 bytes).
pub const KIB: u64 = 1 << 10;
/// One MiB (1024 KiB).
pub const MIB: u64 = 1 << 20;
/// One GiB (1024 MiB).
pub const GIB: u64 = 1 << 30;

/// Why a size string was rejected by [`parse_size`].
///
/// The `Display` text quotes the input and says what is accepted, so it can
/// be shown to users as is (the CLI does, and so do config errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number with an optional `K`/`M`/`G` (or `KiB`/`MiB`/`GiB`) suffix.
    #[error(
        "invalid size \"{input}\": expected a number with an optional K, M or G suffix (e.g. \"256M\"); a bare number means MiB"
    )]
    Invalid {
        /// The rejected text.
        input: String,
    },
    /// The number of bytes does not fit in 64 bits.
    #[error("size \"{input}\" is too large: it does not fit in 64 bits")]
    Overflow {
        /// The rejected text.
        input: String,
    },
}

/// Parses a memory size into bytes.
///
/// Accepted: an unsigned decimal integer, optionally followed (spaces
/// allowed in between) by a binary unit suffix, case-insensitive:
/// `K`/`KiB` (×1024), `M`/`MiB` (×1024²), `G`/`GiB` (×1024³). Without a
/// suffix the number means **MiB**: `"256"` is 256 MiB. Surrounding
/// whitespace is ignored.
///
/// ```
/// assert_eq!(config::parse_size("256M"), Ok(256 << 20));
/// assert_eq!(config::parse_size("1GiB"), Ok(1 << 30));
/// assert_eq!(config::parse_size("512"), Ok(512 << 20));
/// assert!(config::parse_size("12Q").is_err());
/// ```
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let invalid = || SizeError::Invalid {
        input: s.to_string(),
    };
    let overflow = || SizeError::Overflow {
        input: s.to_string(),
    };
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(invalid());
    }
    let multiplier = match suffix.trim_start().to_ascii_lowercase().as_str() {
        "" | "m" | "mib" => MIB,
        "k" | "kib" => KIB,
        "g" | "gib" => GIB,
        _ => return Err(invalid()),
    };
    let number: u64 = digits.parse().map_err(|_| overflow())?;
    number.checked_mul(multiplier).ok_or_else(overflow)
}

/// Formats a byte count for messages: the largest binary unit that divides
/// it exactly, e.g. `16 MiB`, `1536 KiB`, `100 bytes`.
pub(crate) fn format_size(bytes: u64) -> impl fmt::Display {
    struct Size(u64);
    impl fmt::Display for Size {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let b = self.0;
            if b != 0 && b % GIB == 0 {
                write!(f, "{} GiB", b / GIB)
            } else if b != 0 && b % MIB == 0 {
                write!(f, "{} MiB", b / MIB)
            } else if b != 0 && b % KIB == 0 {
                write!(f, "{} KiB", b / KIB)
            } else if b == 1 {
                write!(f, "1 byte")
            } else {
                write!(f, "{b} bytes")
            }
        }
    }
    Size(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn size_table() {
        let ok: &[(&str, u64)] = &[
            ("256M", 256 * MIB),
            ("256m", 256 * MIB),
            ("256MiB", 256 * MIB),
            ("256mib", 256 * MIB),
            ("256 MiB", 256 * MIB),
            ("  256M  ", 256 * MIB),
            ("256", 256 * MIB),
            ("0", 0),
            ("1G", GIB),
            ("1g", GIB),
            ("64GiB", 64 * GIB),
            ("16384K", 16 * MIB),
            ("4KiB", 4 * KIB),
            ("1k", KIB),
            ("007M", 7 * MIB),
            ("17179869183G", 17_179_869_183 * GIB),
        ];
        for (input, want) in ok {
            assert_eq!(parse_size(input), Ok(*want), "input {input:?}");
        }
        let invalid = [
            "", " ", "12Q", "M", "1.5G", "-1M", "+1M", "1MB", "1 G B", "1GG", "0x10M", "1_000M",
            "1T", "G1", "1e3", "1B",
        ];
        for input in invalid {
            assert_eq!(
                parse_size(input),
                Err(SizeError::Invalid {
                    input: input.to_string()
                }),
                "input {input:?}"
            );
        }
        for input in [
            "17179869184G",
            "99999999999999999999",
            "18446744073709551616K",
        ] {
            assert_eq!(
                parse_size(input),
                Err(SizeError::Overflow {
                    input: input.to_string()
                }),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn size_messages() {
        let e = parse_size("12Q").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "invalid size \"12Q\": expected a number with an optional K, M or G suffix (e.g. \"256M\")"
            ),
            "{e}"
        );
        let e = parse_size("99999999999G").unwrap_err().to_string();
        assert!(e.contains("\"99999999999G\" is too large"), "{e}");
    }

    #[test]
    fn format_sizes() {
        assert_eq!(format_size(16 * MIB).to_string(), "16 MiB");
        assert_eq!(format_size(64 * GIB).to_string(), "64 GiB");
        assert_eq!(format_size(1536 * KIB).to_string(), "1536 KiB");
        assert_eq!(format_size(100).to_string(), "100 bytes");
        assert_eq!(format_size(0).to_string(), "0 bytes");
        assert_eq!(format_size(1).to_string(), "1 byte");
    }
}
