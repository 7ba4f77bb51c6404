//! Reading a config file: text → raw serde structs (unknown keys rejected) → the model and the
//! spans of its fields, with the overrides applied (`build`) → every rule checked ([`crate::rules`]).

use std::fs;
use std::path::Path;

use toml::de::DeTable;

use crate::error::ConfigError;
use crate::model::Config;
use crate::overrides::Overrides;
use crate::raw::RawConfig;
use crate::source::Source;

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
    let src = Source::new(text, origin);
    let doc = DeTable::parse(text).map_err(|e| src.toml_error(&e, None))?;
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| src.toml_error(&e, Some(doc.get_ref())))?;
    let (config, spans) = crate::build::build(&src, raw, overrides)?;
    crate::rules::check(&config, &spans)?;
    Ok(config)
}
