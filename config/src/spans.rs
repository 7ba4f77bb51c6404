//! Where the fields of a configuration came from, so that the rules ([`crate::rules`]) can say
//! where a value they refuse was written.
//!
//! A config read from a file comes with [`Spans`] filled in while it was built (a line of the file,
//! or the command-line option that overrode it); a config built in code has none
//! ([`Spans::code`]), and its errors carry [`Location::Code`]. Fields are keyed by their dotted
//! path as errors name them (`ros.memory`, `hrt.modules[2].path`).

use std::collections::HashMap;
use std::ops::Range;

use crate::error::{ConfigError, Location, Problem};

/// Where each field of one [`crate::Config`] came from.
#[derive(Debug, Clone)]
pub(crate) struct Spans {
    /// Where a field without an entry came from: the config file as a whole, or [`Location::Code`].
    fallback: Location,
    fields: HashMap<String, Written>,
    /// Values put together from several places (a command line and `--append`): the byte ranges
    /// of the value, in order, and where each came from.
    parts: HashMap<String, Vec<(Range<usize>, Location)>>,
}

/// One field as its source wrote it.
#[derive(Debug, Clone)]
struct Written {
    at: Location,
    /// The name the source gives the field, where it differs from the model's (the file names the
    /// device section it has, where an in-code config has only `block/net/vsock`).
    name: Option<String>,
    /// The value's text as written, where the model holds it converted (a MAC address).
    text: Option<String>,
}

impl Spans {
    /// No locations: a config built in code.
    pub(crate) fn code() -> Self {
        Spans::with_fallback(Location::Code)
    }

    /// Locations to be filled in; `fallback` is where fields without one came from.
    pub(crate) fn with_fallback(fallback: Location) -> Self {
        Spans {
            fallback,
            fields: HashMap::new(),
            parts: HashMap::new(),
        }
    }

    /// Records where `field` was written.
    pub(crate) fn set(&mut self, field: impl Into<String>, at: Location) {
        let written = Written {
            at,
            name: None,
            text: None,
        };
        self.fields.insert(field.into(), written);
    }

    /// Records where `field` was written, and its text as written.
    pub(crate) fn set_text(&mut self, field: impl Into<String>, at: Location, text: &str) {
        let written = Written {
            at,
            name: None,
            text: Some(text.to_string()),
        };
        self.fields.insert(field.into(), written);
    }

    /// Records where `field` was written and the name the source gives it.
    pub(crate) fn set_named(&mut self, field: impl Into<String>, at: Location, name: &str) {
        let written = Written {
            at,
            name: Some(name.to_string()),
            text: None,
        };
        self.fields.insert(field.into(), written);
    }

    /// Records that bytes `range` of the value of `field` came from `at` (call in order).
    pub(crate) fn add_part(&mut self, field: &str, range: Range<usize>, at: Location) {
        self.parts
            .entry(field.to_string())
            .or_default()
            .push((range, at));
    }

    /// Whether the source wrote `field` at all.
    pub(crate) fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// The text of `field` as written, if the model holds it converted.
    pub(crate) fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(|w| w.text.as_deref())
    }

    /// Where `field` came from.
    pub(crate) fn at(&self, field: &str) -> Location {
        self.fields
            .get(field)
            .map_or_else(|| self.fallback.clone(), |w| w.at.clone())
    }

    /// The pieces of the `len`-byte value of `field` and where each came from: the recorded parts,
    /// or the whole value from where the field came from.
    pub(crate) fn parts(&self, field: &str, len: usize) -> Vec<(Range<usize>, Location)> {
        match self.parts.get(field) {
            Some(parts) => parts.clone(),
            None => vec![(0..len, self.at(field))],
        }
    }

    /// The error that `field` has `problem`, located where the field came from.
    pub(crate) fn error(&self, field: &str, problem: Problem) -> ConfigError {
        let name = self.fields.get(field).and_then(|w| w.name.clone());
        invalid(
            self.at(field),
            name.unwrap_or_else(|| field.to_string()),
            problem,
        )
    }
}

/// A [`ConfigError::Invalid`].
pub(crate) fn invalid(
    location: Location,
    field: impl Into<String>,
    problem: Problem,
) -> ConfigError {
    ConfigError::Invalid {
        location,
        field: field.into(),
        problem: Box::new(problem),
    }
}
