//! The text being read: where it came from, the locations of its byte spans, and TOML errors turned
//! into [`ConfigError`]s naming the line and the field.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{ConfigError, Location};

/// A config file's text and where it came from.
pub(crate) struct Source<'a> {
    text: &'a str,
    /// The file, as given (named in locations).
    pub(crate) origin: &'a Path,
    /// Its directory: the base of relative paths in it.
    pub(crate) base: &'a Path,
}

impl<'a> Source<'a> {
    /// `text`, read from `origin`.
    pub(crate) fn new(text: &'a str, origin: &'a Path) -> Self {
        Source {
            text,
            origin,
            base: origin.parent().unwrap_or(Path::new("")),
        }
    }

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
    pub(crate) fn file(&self) -> Location {
        Location::File {
            path: self.origin.to_path_buf(),
            line: None,
        }
    }

    /// A syntax or schema error of the text; `doc` (the text parsed as a plain TOML document, when
    /// it parses) names the field at the error's span.
    pub(crate) fn toml_error(&self, e: &toml::de::Error, doc: Option<&DeTable<'_>>) -> ConfigError {
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
