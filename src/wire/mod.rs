//! The PostgreSQL wire protocol as pgtape needs it: framing, the messages the
//! tap and the replayer read, and TLS configuration for both sides.

pub mod frame;
pub mod messages;
pub mod rowhash;
pub mod startup;
pub mod stream;
pub mod tls;
