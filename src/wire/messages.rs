//! The few messages pgtape reads, parsed lazily from frame bodies borrowed out
//! of the read buffer. Nothing here is needed to forward traffic; it is what
//! the statement tap and the replayer inspect.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed {what} message: {why}")]
pub struct MessageError {
    pub what: &'static str,
    pub why: &'static str,
}

/// A forward-only reader over a message body.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self, why: &'static str) -> MessageError {
        MessageError {
            what: self.what,
            why,
        }
    }

    pub fn cstr(&mut self) -> Result<&'a [u8], MessageError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.err("missing NUL terminator"))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.buf.len() < n {
            return Err(self.err("truncated"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.bytes(1)?[0])
    }

    pub fn i16(&mut self) -> Result<i16, MessageError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, MessageError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn count(&mut self) -> Result<usize, MessageError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| self.err("negative count"))
    }

    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

/// Parse: `(statement name, query, parameter type OIDs as raw big-endian bytes)`.
pub fn parse_parse(body: &[u8]) -> Result<(&[u8], &[u8], &[u8]), MessageError> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.count()?;
    let oids = r.bytes(n * 4)?;
    Ok((name, query, oids))
}

/// Decodes the raw OID array kept from a Parse message.
pub fn decode_oids(raw: &[u8]) -> Vec<u32> {
    raw.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Bind: `(portal, statement)` — the rest stays raw for the recorder.
pub fn bind_names(body: &[u8]) -> Result<(&[u8], &[u8]), MessageError> {
    let mut r = Reader::new(body, "Bind");
    Ok((r.cstr()?, r.cstr()?))
}

/// A Bind message decoded in full (off the forwarding path, by the recorder
/// and the replayer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

pub fn parse_bind(body: &[u8]) -> Result<Bind<'_>, MessageError> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let nf = r.count()?;
    let param_formats = (0..nf).map(|_| r.i16()).collect::<Result<_, _>>()?;
    let np = r.count()?;
    let mut params = Vec::with_capacity(np);
    for _ in 0..np {
        let len = r.i32()?;
        params.push(if len < 0 {
            None
        } else {
            Some(r.bytes(len as usize)?)
        });
    }
    let nr = r.count()?;
    let result_formats = (0..nr).map(|_| r.i16()).collect::<Result<_, _>>()?;
    Ok(Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// Execute: `(portal, max rows; 0 = all)`.
pub fn parse_execute(body: &[u8]) -> Result<(&[u8], i32), MessageError> {
    let mut r = Reader::new(body, "Execute");
    Ok((r.cstr()?, r.i32()?))
}

/// Describe and Close: `(b'S' | b'P', name)`.
pub fn parse_target<'a>(
    body: &'a [u8],
    what: &'static str,
) -> Result<(u8, &'a [u8]), MessageError> {
    let mut r = Reader::new(body, what);
    Ok((r.u8()?, r.cstr()?))
}

/// Query: the SQL text without its NUL.
pub fn parse_query(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

/// CommandComplete: the tag without its NUL.
pub fn parse_command_complete(body: &[u8]) -> &[u8] {
    body.strip_suffix(&[0]).unwrap_or(body)
}

/// The row count at the end of a command tag (`INSERT 0 5`, `SELECT 3`).
pub fn tag_rows(tag: &[u8]) -> Option<u64> {
    let last = tag.rsplit(|&b| b == b' ').next()?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

/// The SQLSTATE and message fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: &'a [u8],
    pub code: &'a [u8],
    pub message: &'a [u8],
}

pub fn parse_error(body: &[u8]) -> Result<ErrorFields<'_>, MessageError> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut f = ErrorFields::default();
    loop {
        let field = r.u8()?;
        if field == 0 {
            return Ok(f);
        }
        let v = r.cstr()?;
        match field {
            b'V' => f.severity = v,
            b'S' if f.severity.is_empty() => f.severity = v,
            b'C' => f.code = v,
            b'M' => f.message = v,
            _ => {}
        }
    }
}

/// Builds an ErrorResponse frame for errors pgtape itself reports to a client.
pub fn error_response(severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.len() + 32);
    for (f, v) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(f);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::new();
    super::frame::put_frame(&mut out, b'E', &body);
    out
}

/// The key/value parameters of a StartupMessage body (after the version).
pub fn startup_params(body: &[u8]) -> Vec<(String, String)> {
    let mut r = Reader::new(body, "StartupMessage");
    let mut out = Vec::new();
    while let Ok(k) = r.cstr() {
        if k.is_empty() {
            break;
        }
        let Ok(v) = r.cstr() else { break };
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    out
}

/// SASL mechanism list of an AuthenticationSASL message (`R`, code 10).
pub fn sasl_mechanisms(body: &[u8]) -> Vec<&[u8]> {
    let mut r = Reader::new(body.get(4..).unwrap_or_default(), "AuthenticationSASL");
    let mut out = Vec::new();
    while let Ok(m) = r.cstr() {
        if m.is_empty() {
            break;
        }
        out.push(m);
    }
    out
}

/// Rebuilds an AuthenticationSASL frame without the channel-binding
/// mechanisms: a proxy that terminates TLS cannot offer `-PLUS`.
pub fn sasl_without_plus(body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len());
    b.extend_from_slice(&10i32.to_be_bytes());
    for m in sasl_mechanisms(body) {
        if !m.ends_with(b"-PLUS") {
            b.extend_from_slice(m);
            b.push(0);
        }
    }
    b.push(0);
    let mut out = Vec::new();
    super::frame::put_frame(&mut out, b'R', &b);
    out
}

/// A parameter value for people: text-format UTF-8 as text, anything else
/// (binary format, invalid UTF-8) as `\x` hex.
pub fn render_param(v: &[u8], format: i16) -> String {
    match (format, std::str::from_utf8(v)) {
        (0, Ok(s)) => s.to_string(),
        _ => {
            let mut s = String::with_capacity(2 + v.len() * 2);
            s.push_str("\\x");
            for b in v {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use postgres_protocol::IsNull;
    use postgres_protocol::message::frontend;

    fn body(buf: &BytesMut) -> &[u8] {
        &buf[5..]
    }

    #[test]
    fn parse_round_trips_through_postgres_protocol() {
        let mut buf = BytesMut::new();
        frontend::parse("s1", "SELECT $1::int4, $2", [23u32, 25], &mut buf).unwrap();
        let (name, q, oids) = parse_parse(body(&buf)).unwrap();
        assert_eq!((name, q), (&b"s1"[..], &b"SELECT $1::int4, $2"[..]));
        assert_eq!(decode_oids(oids), vec![23, 25]);
    }

    #[test]
    fn bind_round_trips_through_postgres_protocol() {
        let mut buf = BytesMut::new();
        let values: [Option<&[u8]>; 3] = [Some(b"\x00\x00\x00\x07"), None, Some(b"\xff\xfe")];
        frontend::bind(
            "p",
            "s1",
            [1i16, 0, 1],
            values.iter(),
            |v, out| match v {
                Some(b) => {
                    out.extend_from_slice(b);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [1i16],
            &mut buf,
        )
        .map_err(|_| ())
        .unwrap();
        let b = parse_bind(body(&buf)).unwrap();
        assert_eq!(bind_names(body(&buf)).unwrap(), (&b"p"[..], &b"s1"[..]));
        assert_eq!(b.param_formats, vec![1, 0, 1]);
        assert_eq!(b.params, values.to_vec());
        assert_eq!(b.result_formats, vec![1]);
    }

    #[test]
    fn execute_describe_close_query_round_trip() {
        let mut buf = BytesMut::new();
        frontend::execute("portal", 50, &mut buf).unwrap();
        assert_eq!(parse_execute(body(&buf)).unwrap(), (&b"portal"[..], 50));
        buf.clear();
        frontend::describe(b'S', "s1", &mut buf).unwrap();
        assert_eq!(
            parse_target(body(&buf), "Describe").unwrap(),
            (b'S', &b"s1"[..])
        );
        buf.clear();
        frontend::close(b'P', "", &mut buf).unwrap();
        assert_eq!(parse_target(body(&buf), "Close").unwrap(), (b'P', &b""[..]));
        buf.clear();
        frontend::query("SELECT 'é'", &mut buf).unwrap();
        assert_eq!(parse_query(body(&buf)), "SELECT 'é'".as_bytes());
    }

    #[test]
    fn error_response_round_trips() {
        let frame = error_response("FATAL", "08P01", "bad frame");
        let f = parse_error(&frame[5..]).unwrap();
        assert_eq!(
            (f.severity, f.code, f.message),
            (&b"FATAL"[..], &b"08P01"[..], &b"bad frame"[..])
        );
    }

    #[test]
    fn command_tag_rows() {
        assert_eq!(tag_rows(b"INSERT 0 5"), Some(5));
        assert_eq!(tag_rows(b"SELECT 3"), Some(3));
        assert_eq!(tag_rows(b"BEGIN"), None);
    }

    #[test]
    fn sasl_plus_is_stripped() {
        let mut b = 10i32.to_be_bytes().to_vec();
        b.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let frame = sasl_without_plus(&b);
        assert_eq!(sasl_mechanisms(&frame[5..]), vec![&b"SCRAM-SHA-256"[..]]);
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        assert!(parse_bind(b"p\0s\0\x00\x01").is_err());
        assert!(parse_parse(b"name").is_err());
        assert!(parse_execute(b"\0\0").is_err());
        assert!(parse_error(b"Cabc").is_err());
    }
}
