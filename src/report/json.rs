//! The JSON exporter: the [`Summary`] as one pretty-printed document. Field
//! names are part of the interface (documented in the README); add fields,
//! do not rename them.

use std::io::Write;

use super::{Exporter, Summary};

pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn export(&self, summary: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, summary)?;
        writeln!(out)
    }
}
