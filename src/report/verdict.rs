//! Rendering a replay's [`Verdict`]: the exporters for a results directory
//! (table, JSON, Markdown, HTML) behind [`VerdictExporter`], and the helpers
//! `pgtape replay --report FILE` and `pgtape report RESULTS_DIR` call.

use std::io::Write;
use std::path::Path;

use super::Format;
use crate::diff::Verdict;

/// One output format of a verdict.
pub trait VerdictExporter {
    fn export(&self, verdict: &Verdict, out: &mut dyn Write) -> std::io::Result<()>;
}

pub fn exporter(format: Format) -> Box<dyn VerdictExporter> {
    match format {
        Format::Table => Box::new(super::verdict_table::VerdictTable),
        Format::Json => Box::new(super::verdict_json::VerdictJson),
        Format::Markdown => Box::new(super::verdict_md::VerdictMarkdown),
        Format::Html => Box::new(super::verdict_html::VerdictHtml),
    }
}

/// Renders `verdict` in `format` to `out`.
pub fn render(verdict: &Verdict, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    exporter(format).export(verdict, out)
}

/// The format a report file's extension asks for: `.html`/`.htm`, `.json`,
/// `.md`/`.markdown`, anything else a text table.
pub fn format_for(path: &Path) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => Format::Html,
        Some("json") => Format::Json,
        Some("md" | "markdown") => Format::Markdown,
        _ => Format::Table,
    }
}

/// Writes `verdict` to `path` in the format its extension names.
pub fn write_report(verdict: &Verdict, path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
    })?;
    let mut w = std::io::BufWriter::new(file);
    render(verdict, format_for(path), &mut w)?;
    w.flush()
}
