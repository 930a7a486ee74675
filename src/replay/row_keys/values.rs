//! A key value in one canonical form per kind of type, whatever form it
//! was sent in (text or binary, `42`, `'042 '`, int4 or int8), so one row
//! is one key. Types with no form known here key nothing.

pub(super) const INT2: u32 = 21;
pub(super) const INT4: u32 = 23;
pub(super) const INT8: u32 = 20;
pub(super) const OID: u32 = 26;
pub(super) const TEXT: u32 = 25;
pub(super) const VARCHAR: u32 = 1043;
pub(super) const BPCHAR: u32 = 1042;
pub(super) const NAME: u32 = 19;
pub(super) const UUID: u32 = 2950;

/// Types whose values have one canonical form here.
pub(super) fn canonical_type(ty: u32) -> bool {
    kind(ty).is_some()
}

/// Integers, strings, uuids: types within a kind read each other's values.
pub(super) fn kind(ty: u32) -> Option<u8> {
    match ty {
        INT2 | INT4 | INT8 | OID => Some(0),
        TEXT | VARCHAR | BPCHAR | NAME => Some(1),
        UUID => Some(2),
        _ => None,
    }
}

/// A text-format value in the canonical form of its column's type; `None`
/// for types whose forms are not known here (the statement then counts for
/// its whole table).
pub(super) fn canon_text(v: &[u8], ty: u32, out: &mut String) -> Option<()> {
    let s = std::str::from_utf8(v).ok()?;
    match ty {
        INT2 | INT4 | INT8 | OID => {
            let n: i128 = s.trim().parse().ok()?;
            out.push_str(&n.to_string());
        }
        UUID => out.extend(
            s.chars()
                .filter(|c| c.is_ascii_hexdigit())
                .map(|c| c.to_ascii_lowercase()),
        ),
        TEXT | VARCHAR | NAME => out.push_str(s),
        BPCHAR => out.push_str(s.trim_end_matches(' ')),
        _ => return None,
    }
    Some(())
}

/// A binary-format value in the same canonical form as [`canon_text`].
pub(super) fn canon_binary(v: &[u8], ty: u32, out: &mut String) -> Option<()> {
    match ty {
        INT2 | INT4 | INT8 | OID => {
            let n: i128 = match v.len() {
                2 => i16::from_be_bytes(v.try_into().ok()?).into(),
                4 if ty == OID => u32::from_be_bytes(v.try_into().ok()?).into(),
                4 => i32::from_be_bytes(v.try_into().ok()?).into(),
                8 => i64::from_be_bytes(v.try_into().ok()?).into(),
                _ => return None,
            };
            out.push_str(&n.to_string());
        }
        UUID if v.len() == 16 => {
            for b in v {
                out.push_str(&format!("{b:02x}"));
            }
        }
        TEXT | VARCHAR | NAME | BPCHAR => canon_text(v, ty, out)?,
        _ => return None,
    }
    Some(())
}
