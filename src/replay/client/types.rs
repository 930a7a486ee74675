//! Names of user-defined result types. A type created during a replay (an
//! enum, a domain, a composite, a table's row type) gets a different OID on
//! each side, so the diff compares user types by schema-qualified name and
//! built-in types by OID (the same on every server).
//!
//! Names are resolved on the statement's own connection, right after it
//! (so a type its own open transaction created is seen), once per OID and
//! connection; the named columns replace the cached ones, so a prepared
//! statement's later executions cost nothing.

use std::io;
use std::sync::Arc;

use postgres_protocol::message::frontend;

use super::{Client, Column, Reply};
use crate::wire::messages::Reader;

/// PostgreSQL's FirstNormalObjectId: OIDs below it are built in.
pub const FIRST_USER_OID: u32 = 16384;

fn unnamed(c: &Column) -> bool {
    c.type_oid >= FIRST_USER_OID && c.type_name.is_none()
}

impl Client {
    /// Columns as parsed, with the names this connection already knows.
    pub(super) fn with_known_names(&self, mut cols: Vec<Column>) -> Vec<Column> {
        for c in cols.iter_mut().filter(|c| unnamed(c)) {
            c.type_name = self.type_names.get(&c.type_oid).cloned();
        }
        cols
    }

    /// Names the user-defined types of `out`'s columns (a catalog query on
    /// this connection for the ones it has not seen yet).
    pub(super) async fn name_types(&mut self, out: &mut Reply) -> io::Result<()> {
        if !out.columns.iter().any(unnamed) {
            return Ok(());
        }
        let mut missing: Vec<u32> = out
            .columns
            .iter()
            .filter(|c| unnamed(c) && !self.type_names.contains_key(&c.type_oid))
            .map(|c| c.type_oid)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            self.look_up_types(&missing).await?;
        }
        let named: Arc<[Column]> = self.with_known_names(out.columns.to_vec()).into();
        // Later executions share the named columns.
        if Arc::ptr_eq(&self.last_columns.1, &out.columns) {
            self.last_columns.1 = named.clone();
        }
        for cols in self.described.values_mut() {
            if Arc::ptr_eq(cols, &out.columns) {
                *cols = named.clone();
            }
        }
        out.columns = named;
        Ok(())
    }

    async fn look_up_types(&mut self, oids: &[u32]) -> io::Result<()> {
        let list = oids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT t.oid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
             OPERATOR(pg_catalog.||) pg_catalog.quote_ident(t.typname) \
             FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
             WHERE t.oid IN ({list})"
        );
        self.out.clear();
        frontend::query(&sql, &mut self.out)?;
        self.flush_out().await?;
        loop {
            let (tag, body) = self.read_frame().await?;
            match tag {
                b'D' => {
                    // A type that cannot be named (the lookup failed in an
                    // aborted transaction) keeps its OID.
                    if let Some((oid, name)) = oid_and_name(&body) {
                        self.type_names.insert(oid, name.into());
                    }
                }
                b'Z' => return Ok(()),
                _ => {}
            }
        }
    }
}

/// The two text cells of a lookup row.
fn oid_and_name(body: &[u8]) -> Option<(u32, &str)> {
    let mut r = Reader::new(body, "DataRow");
    if r.i16().ok()? != 2 {
        return None;
    }
    let mut cell = || -> Option<&[u8]> {
        let n = r.i32().ok()?;
        r.bytes(usize::try_from(n).ok()?).ok()
    };
    let oid = std::str::from_utf8(cell()?).ok()?.parse().ok()?;
    let name = std::str::from_utf8(cell()?).ok()?;
    Some((oid, name))
}
