//! The full rows of the few statements a report shows as examples (SQL,
//! parameters, both sides' results with columns and error messages), read
//! back from the results files by key after the join.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int16Type, Int32Type, Int64Type, UInt32Type};

use super::DiffError;
use super::load::{Key, opt_str, scan};
use super::model::{Column, SideSummary};
use crate::replay::results::{Status, col};
use crate::wire::messages::render_param;

/// Everything a report shows about one statement on one side.
#[derive(Debug, Clone)]
pub struct Detail {
    pub sql: String,
    pub protocol: String,
    pub read_only: bool,
    pub param_types: Vec<u32>,
    pub param_formats: Vec<i16>,
    pub param_values: Vec<Option<Vec<u8>>>,
    pub captured: SideSummary,
    pub side: SideSummary,
}

impl Detail {
    /// Parameters as text: text-format values as text, binary as `\x` hex.
    pub fn params_text(&self) -> Vec<Option<String>> {
        self.param_values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let format = match self.param_formats.len() {
                    0 => 0,
                    1 => self.param_formats[0],
                    _ => self.param_formats.get(i).copied().unwrap_or(0),
                };
                v.as_deref().map(|v| render_param(v, format))
            })
            .collect()
    }
}

/// Reads the full rows of `keys` from one side's file.
pub fn details(path: &Path, keys: &HashSet<Key>) -> Result<HashMap<Key, Detail>, DiffError> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    // Every column (older files lack some; `scan` leaves those out).
    let names: Vec<String> = crate::replay::results::results_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    scan(path, &all, |b| {
        let i64c = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>();
        let strc = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>();
        let (session, seq) = (i64c(col::SESSION_ID), i64c(col::SEQ));
        let clone = b
            .column_by_name(col::CLONE)
            .unwrap()
            .as_primitive::<Int32Type>();
        for i in 0..b.num_rows() {
            let key = (session.value(i), seq.value(i), clone.value(i));
            if !keys.contains(&key) {
                continue;
            }
            let list = |n: &str| b.column_by_name(n).unwrap().as_list::<i32>().value(i);
            let ptypes = list(col::PARAM_TYPES);
            let pformats = list(col::PARAM_FORMATS);
            let pvalues = list(col::PARAM_VALUES);
            let pvalues = pvalues.as_binary::<i32>();
            let names = list(col::COLUMN_NAMES);
            let types = list(col::COLUMN_TYPES);
            let (names, types) = (names.as_string::<i32>(), types.as_primitive::<UInt32Type>());
            let type_names = b
                .column_by_name(col::COLUMN_TYPE_NAMES)
                .map(|c| c.as_list::<i32>().value(i));
            let type_names = type_names.as_ref().map(|a| a.as_string::<i32>());
            let captured_sqlstate = opt_str(strc(col::CAPTURED_SQLSTATE), i);
            let captured_dur = i64c(col::CAPTURED_DURATION_US).value(i);
            out.insert(
                key,
                Detail {
                    sql: strc(col::SQL).value(i).to_string(),
                    protocol: strc(col::PROTOCOL).value(i).to_string(),
                    read_only: b
                        .column_by_name(col::READ_ONLY)
                        .unwrap()
                        .as_boolean()
                        .value(i),
                    param_types: ptypes.as_primitive::<UInt32Type>().values().to_vec(),
                    param_formats: pformats.as_primitive::<Int16Type>().values().to_vec(),
                    param_values: (0..pvalues.len())
                        .map(|j| (!pvalues.is_null(j)).then(|| pvalues.value(j).to_vec()))
                        .collect(),
                    captured: SideSummary {
                        status: if captured_sqlstate.is_some() {
                            Status::Error
                        } else {
                            Status::Ok
                        }
                        .as_str()
                        .into(),
                        command_tag: opt_str(strc(col::CAPTURED_COMMAND_TAG), i),
                        rows: i64c(col::CAPTURED_ROWS).value(i),
                        columns: Vec::new(),
                        sqlstate: captured_sqlstate,
                        error_message: None,
                        duration_us: captured_dur,
                    },
                    side: SideSummary {
                        status: strc(col::STATUS).value(i).to_string(),
                        command_tag: opt_str(strc(col::COMMAND_TAG), i),
                        rows: i64c(col::ROWS).value(i),
                        columns: (0..names.len())
                            .map(|j| Column {
                                name: names.value(j).to_string(),
                                type_oid: types.value(j),
                                type_name: type_names.and_then(|a| opt_str(a, j)),
                            })
                            .collect(),
                        sqlstate: opt_str(strc(col::SQLSTATE), i),
                        error_message: opt_str(strc(col::ERROR_MESSAGE), i)
                            .or_else(|| opt_str(strc(col::REASON), i)),
                        duration_us: i64c(col::DURATION_US).value(i),
                    },
                },
            );
        }
        Ok(())
    })?;
    Ok(out)
}
