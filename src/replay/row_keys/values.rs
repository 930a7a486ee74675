//! A key value in one canonical form per kind of type, whatever form it
//! was sent in (text or binary, `42`, `'042 '`, int4 or int8), so one row
//! is one key. Types with no form known here key nothing.

use xxhash_rust::xxh3::Xxh3;

use super::KeyedPlan;
use crate::replay::results::Captured;
use crate::sql::row_key::{Slot, row_target};

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

impl KeyedPlan {
    /// The hash of the statement's key, when every value of it can be read.
    pub(super) fn hash(&self, c: &Captured) -> Option<u64> {
        let reparsed;
        let slots = if *c.sql == *self.sql {
            &self.slots
        } else {
            // Literals differ per statement (simple protocol): read them again.
            let rt = row_target(&c.sql)?;
            reparsed = self
                .key
                .iter()
                .map(|(k, _)| rt.slot(k).cloned())
                .collect::<Option<Vec<Slot>>>()?;
            &reparsed
        };
        let mut h = Xxh3::new();
        h.update(&self.table.to_le_bytes());
        for ((_, ty), slot) in self.key.iter().zip(slots) {
            match slot {
                Slot::Literal(s) => canon_text(s.as_bytes(), *ty, &mut h)?,
                Slot::Param(n) => {
                    let i = usize::from(*n).checked_sub(1)?;
                    let value = c.param_values.iter().nth(i)??;
                    let format = match c.param_formats.len() {
                        0 => 0,
                        1 => c.param_formats[0],
                        _ => *c.param_formats.get(i)?,
                    };
                    if format == 0 {
                        canon_text(value, *ty, &mut h)?
                    } else {
                        // Binary is in the parameter's own type: one of the
                        // column's kind, or the key is not read.
                        let declared = c.param_types.get(i).copied().unwrap_or(0);
                        if declared != 0 && kind(declared) != kind(*ty) {
                            return None;
                        }
                        canon_binary(value, *ty, &mut h)?
                    }
                }
            }
        }
        Some(h.digest())
    }
}

/// Feeds a text-format value, in the canonical form of its column's type,
/// to `h`; `None` for types whose forms are not known here (the statement
/// then counts for its whole table). Nothing is allocated: the dispatcher
/// does this for every keyed statement.
pub(super) fn canon_text(v: &[u8], ty: u32, h: &mut Xxh3) -> Option<()> {
    let s = std::str::from_utf8(v).ok()?;
    match ty {
        INT2 | INT4 | INT8 | OID => int(s.trim().parse().ok()?, h),
        UUID => {
            let mut u = [0u8; 16];
            let mut n = 0;
            for d in s.bytes().filter(u8::is_ascii_hexdigit) {
                let x = (d as char).to_digit(16)? as u8;
                *u.get_mut(n / 2)? |= if n % 2 == 0 { x << 4 } else { x };
                n += 1;
            }
            if n != 32 {
                return None;
            }
            uuid(&u, h);
        }
        TEXT | VARCHAR | NAME => text(s.as_bytes(), h),
        BPCHAR => text(s.trim_end_matches(' ').as_bytes(), h),
        _ => return None,
    }
    Some(())
}

/// A binary-format value, fed as [`canon_text`] feeds the same value.
pub(super) fn canon_binary(v: &[u8], ty: u32, h: &mut Xxh3) -> Option<()> {
    match ty {
        INT2 | INT4 | INT8 | OID => int(
            match v.len() {
                2 => i16::from_be_bytes(v.try_into().ok()?).into(),
                4 if ty == OID => u32::from_be_bytes(v.try_into().ok()?).into(),
                4 => i32::from_be_bytes(v.try_into().ok()?).into(),
                8 => i64::from_be_bytes(v.try_into().ok()?).into(),
                _ => return None,
            },
            h,
        ),
        UUID if v.len() == 16 => uuid(v, h),
        TEXT | VARCHAR | NAME | BPCHAR => canon_text(v, ty, h)?,
        _ => return None,
    }
    Some(())
}

fn int(n: i128, h: &mut Xxh3) {
    h.update(b"i");
    h.update(&n.to_le_bytes());
}

fn uuid(u: &[u8], h: &mut Xxh3) {
    h.update(b"u");
    h.update(u);
}

fn text(s: &[u8], h: &mut Xxh3) {
    h.update(b"t");
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(f: impl FnOnce(&mut Xxh3) -> Option<()>) -> Option<u64> {
        let mut h = Xxh3::new();
        f(&mut h)?;
        Some(h.digest())
    }

    /// One value is one key in every form a client may send it in.
    #[test]
    fn a_value_hashes_alike_in_text_and_binary() {
        let t = |v: &str, ty| digest(|h| canon_text(v.as_bytes(), ty, h));
        let b = |v: &[u8], ty| digest(|h| canon_binary(v, ty, h));
        assert_eq!(t(" 042", INT4), b(&42i64.to_be_bytes(), INT8));
        assert_eq!(t("42", INT8), b(&42i16.to_be_bytes(), INT2));
        assert_ne!(t("42", INT4), t("43", INT4));
        let u = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
        let raw = [
            0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        assert_eq!(t(u, UUID), b(&raw, UUID));
        assert_eq!(t("{a0eebc999c0b4ef8bb6d6bb9bd380a11}", UUID), t(u, UUID));
        assert_eq!(t("a0ee", UUID), None, "not a uuid");
        assert_eq!(t("ab  ", BPCHAR), t("ab", TEXT));
        assert_ne!(t("42", TEXT), t("42", INT4), "a string is not a number");
        assert_eq!(t("1.5", 1700), None, "numeric has no canonical form here");
    }
}
