//! What pgtape knows about a statement's SQL text, in one place: its
//! normalised text and fingerprint ([`fingerprint`], cached per distinct
//! text by [`shape_cache`]), its statement type, tables, whether it is
//! read-only and whether it is a COPY FROM STDIN ([`classify`]), and what
//! makes its results vary between runs ([`determinism`]), gathered as one
//! [`Facts`] per distinct normalised text by [`facts`]; where it names
//! relations ([`relations`]) and which rows of its one table it touches
//! ([`row_key`]). A foundation: the capture, the replay, the diff and the
//! report ask it (the readers of captures and results through a
//! [`FactsCache`], once per fingerprint) and never work these out themselves.

pub mod classify;
pub mod determinism;
pub mod facts;
pub mod fingerprint;
pub mod relations;
pub mod row_key;
pub mod shape_cache;

pub use classify::{
    StatementType, copy_from_stdin, is_control, is_read_only, statement_type, tables,
};
pub use determinism::{has_order_by, is_volatile};
pub use facts::{Facts, FactsCache};
pub use fingerprint::{Shape, shape};
pub use shape_cache::ShapeCache;
