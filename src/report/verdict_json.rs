//! The verdict as one pretty-printed JSON document (schema in the README;
//! `version` names it). Field names are the interface: add, never rename.

use std::io::Write;

use super::verdict::VerdictExporter;
use crate::diff::Verdict;

pub struct VerdictJson;

impl VerdictExporter for VerdictJson {
    fn export(&self, v: &Verdict, out: &mut dyn Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, v)?;
        writeln!(out)
    }
}
