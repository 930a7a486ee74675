//! Values as the remapper compares them: one canonical form whatever the
//! wire format, so the id `42` a result returned in binary is the `42` a
//! later statement sends as text, and the text of a psql literal `'16385'`
//! is the OID a catalog query returned.
//!
//! Only what sessions hand back is a candidate: integers (int2, int4, int8,
//! oid, xid, reg* types), uuids, and text up to [`MAX_TEXT`] bytes.

/// Longest text value mapped (ids and names, not documents).
pub const MAX_TEXT: usize = 64;

/// A value in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Int(i64),
    Uuid([u8; 16]),
    Text(Box<[u8]>),
}

/// The family of a value: the int4 id 7 and the int8 id 7 are not one
/// value (a tenant's int4 id and an int8 session id collide otherwise).
/// `Any` (a literal, a parameter whose type the client left to the server)
/// matches each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    I2,
    I4,
    I8,
    Oid,
    Xid,
    Uuid,
    Text,
    Any,
}

impl Class {
    /// Every class `Any` stands for, most common first.
    pub const TYPED: [Class; 7] = [
        Class::I8,
        Class::I4,
        Class::Oid,
        Class::Text,
        Class::Uuid,
        Class::I2,
        Class::Xid,
    ];
}

/// The class of a type OID (`Any` for 0 and for types never mapped).
pub fn class(type_oid: u32) -> Class {
    match type_oid {
        21 => Class::I2,
        23 => Class::I4,
        20 => Class::I8,
        26 | 24 | 2205 | 2206 | 4089 | 4096 => Class::Oid,
        28 | 5069 => Class::Xid,
        2950 => Class::Uuid,
        25 | 1043 | 1042 | 19 => Class::Text,
        _ => Class::Any,
    }
}

/// A hash of a value, whatever its class (a session's sent values).
pub fn hash(v: &Value) -> u64 {
    use xxhash_rust::xxh3::xxh3_64;
    match v {
        Value::Int(i) => xxh3_64(&i.to_le_bytes()),
        Value::Uuid(u) => xxh3_64(u),
        Value::Text(t) => xxh3_64(t) ^ 0x9e37_79b9_7f4a_7c15,
    }
}

/// The kind of a type OID as far as the remapper cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Uuid,
    Text,
}

/// The kind of a built-in type; `None` for types never mapped.
pub fn kind(type_oid: u32) -> Option<Kind> {
    match type_oid {
        // int2, int4, int8
        21 | 23 | 20 => Some(Kind::Int),
        // oid, xid, xid8, regproc, regclass, regtype, regnamespace, regrole
        26 | 28 | 5069 | 24 | 2205 | 2206 | 4089 | 4096 => Some(Kind::Int),
        2950 => Some(Kind::Uuid),
        // text, varchar, bpchar, name
        25 | 1043 | 1042 | 19 => Some(Kind::Text),
        _ => None,
    }
}

/// True for types whose values the database itself hands out: mapped from
/// any column, not only from a table's.
pub fn handed_out(type_oid: u32) -> bool {
    matches!(type_oid, 26 | 28 | 5069 | 2205 | 2206 | 4089 | 4096 | 2950)
}

impl Value {
    /// A text-format value: an integer (canonical decimal: no `+`, no
    /// leading zeros), a uuid (any case, with hyphens), else text.
    pub fn from_text(b: &[u8]) -> Option<Value> {
        if let Some(i) = parse_int(b) {
            return Some(Value::Int(i));
        }
        if let Some(u) = parse_uuid(b) {
            return Some(Value::Uuid(u));
        }
        (!b.is_empty() && b.len() <= MAX_TEXT).then(|| Value::Text(b.into()))
    }

    /// A binary-format value of type `type_oid`; an unknown type (0, a
    /// parameter the client let the server infer) is read by its width.
    pub fn from_binary(b: &[u8], type_oid: u32) -> Option<Value> {
        match (kind(type_oid), type_oid) {
            (Some(Kind::Int), _) | (None, 0) if matches!(b.len(), 2 | 4 | 8) => {
                Some(Value::Int(be_int(b)))
            }
            (Some(Kind::Uuid), _) | (None, 0) if b.len() == 16 => {
                Some(Value::Uuid(b.try_into().expect("16 bytes")))
            }
            (Some(Kind::Text), _) => Value::from_text(b),
            _ => None,
        }
    }

    /// The value in text format.
    pub fn text(&self) -> Vec<u8> {
        match self {
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Uuid(u) => {
                let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                )
                .into_bytes()
            }
            Value::Text(t) => t.to_vec(),
        }
    }

    /// The value in binary format, `width` bytes wide as the original was;
    /// `None` when it does not fit (an int8 id into an int4 parameter).
    pub fn binary(&self, width: usize) -> Option<Vec<u8>> {
        match self {
            Value::Int(i) => match width {
                2 => i16::try_from(*i).ok().map(|v| v.to_be_bytes().to_vec()),
                // oid and xid are unsigned 32-bit.
                4 => i32::try_from(*i)
                    .map(|v| v.to_be_bytes().to_vec())
                    .or_else(|_| u32::try_from(*i).map(|v| v.to_be_bytes().to_vec()))
                    .ok(),
                8 => Some(i.to_be_bytes().to_vec()),
                _ => None,
            },
            Value::Uuid(u) => (width == 16).then(|| u.to_vec()),
            Value::Text(t) => Some(t.to_vec()),
        }
    }
}

/// A big-endian integer of 2, 4 or 8 bytes; 4-byte values read as signed
/// (an oid above 2^31 reads negative; its text form is read the same way
/// only as text, so such OIDs map from binary to binary only).
fn be_int(b: &[u8]) -> i64 {
    match b.len() {
        2 => i16::from_be_bytes([b[0], b[1]]) as i64,
        4 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
        _ => i64::from_be_bytes(b.try_into().expect("8 bytes")),
    }
}

fn parse_int(b: &[u8]) -> Option<i64> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
        && digits.len() <= 19;
    if !canonical {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn parse_uuid(b: &[u8]) -> Option<[u8; 16]> {
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The cells of a DataRow body (`None` for NULL); `None` if malformed.
pub fn cells(body: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let n = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    let mut at = 2;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = i32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = at + len as usize;
            out.push(Some(body.get(at..end)?));
            at = end;
        }
    }
    Some(out)
}

/// A DataRow body from its cells.
pub fn row(cells: &[Option<&[u8]>], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&(cells.len() as i16).to_be_bytes());
    for c in cells {
        match c {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_forms_meet_in_one_value() {
        assert_eq!(Value::from_text(b"42"), Some(Value::Int(42)));
        assert_eq!(
            Value::from_binary(&42i64.to_be_bytes(), 20),
            Some(Value::Int(42))
        );
        assert_eq!(
            Value::from_binary(&42i32.to_be_bytes(), 0),
            Some(Value::Int(42))
        );
        assert_eq!(Value::from_text(b"-7"), Some(Value::Int(-7)));
        // Not canonical integers: kept as text, never confused with 7.
        assert_eq!(
            Value::from_text(b"007"),
            Some(Value::Text((*b"007").into()))
        );
        assert_eq!(Value::from_text(b"+7"), Some(Value::Text((*b"+7").into())));
        let u = b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
        let v = Value::from_text(u).unwrap();
        assert_eq!(v.text(), u.to_ascii_lowercase());
        assert_eq!(Value::from_binary(&v.binary(16).unwrap(), 2950), Some(v));
        assert_eq!(Value::from_text(&[b'x'; MAX_TEXT + 1]), None);
        assert_eq!(
            Value::from_binary(b"1.5", 701),
            None,
            "float8 is not mapped"
        );
    }

    #[test]
    fn binary_values_keep_their_width_or_are_not_substituted() {
        let v = Value::Int(1001);
        assert_eq!(v.binary(4), Some(1001i32.to_be_bytes().to_vec()));
        assert_eq!(v.binary(8), Some(1001i64.to_be_bytes().to_vec()));
        assert_eq!(Value::Int(70_000).binary(2), None);
        assert_eq!(
            Value::Int(3_000_000_000).binary(4),
            Some(3_000_000_000u32.to_be_bytes().to_vec()),
            "an oid past 2^31"
        );
    }

    #[test]
    fn data_rows_split_into_cells_and_back() {
        let mut body = Vec::new();
        row(&[Some(b"1"), None, Some(b"abc")], &mut body);
        assert_eq!(
            cells(&body).unwrap(),
            vec![Some(&b"1"[..]), None, Some(&b"abc"[..])]
        );
        assert_eq!(cells(&body[..body.len() - 1]), None, "truncated");
    }
}
