//! What every Parquet file pgtape writes shares, captures and replay
//! results alike: list columns spelled one way (a nullable list of `item`),
//! zstd compression, and the check of a file's schema version against the
//! newest this build reads. A foundation: the capture and the replay each
//! own their schema and their version key; this module knows neither.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterPropertiesBuilder;

/// A nullable list column of `item`s, its elements named `item` (what
/// pyarrow, DuckDB and Spark expect).
pub fn list_field(name: &str, item: DataType, nullable_items: bool) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, nullable_items))),
        true,
    )
}

/// `builder` with zstd at `level`.
pub fn zstd(builder: WriterPropertiesBuilder, level: i32) -> WriterPropertiesBuilder {
    builder.set_compression(Compression::ZSTD(
        ZstdLevel::try_new(level).expect("valid zstd level"),
    ))
}

/// A file's schema version as its key-value metadata gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A version this build reads.
    Supported(u32),
    /// A version newer than this build's.
    Newer(u32),
    /// A value that is not a version number.
    Unreadable(String),
    /// No version key: not a file of this kind.
    Missing,
}

/// Checks the version `value` (the metadata's, if any) against the newest
/// `supported`.
pub fn check_version(value: Option<&str>, supported: u32) -> Version {
    match value.map(|v| (v, v.parse::<u32>())) {
        None => Version::Missing,
        Some((_, Ok(v))) if v <= supported => Version::Supported(v),
        Some((_, Ok(v))) => Version::Newer(v),
        Some((v, Err(_))) => Version::Unreadable(v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_supported_newer_unreadable_or_missing() {
        assert_eq!(check_version(Some("2"), 2), Version::Supported(2));
        assert_eq!(check_version(Some("3"), 2), Version::Newer(3));
        assert_eq!(check_version(Some("x"), 2), Version::Unreadable("x".into()));
        assert_eq!(check_version(None, 2), Version::Missing);
    }
}
