//! Connection URLs for the replayer (`postgres://user:pass@host:port/db?sslmode=...`),
//! validated before any I/O, and shown with the password masked.

use thiserror::Error;

use crate::wire::startup::SslMode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnOpts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub sslmode: SslMode,
    pub application_name: Option<String>,
}

#[derive(Debug, Error)]
#[error(
    "invalid connection URL {masked}: {why}; expected postgres://user:password@host:port/database[?sslmode=disable|prefer|require]"
)]
pub struct UrlError {
    pub masked: String,
    pub why: String,
}

impl ConnOpts {
    pub fn parse(s: &str) -> Result<ConnOpts, UrlError> {
        let err = |why: &str| UrlError {
            masked: mask(s),
            why: why.to_string(),
        };
        let u = url::Url::parse(s).map_err(|e| err(&e.to_string()))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(err("the scheme must be postgres:// or postgresql://"));
        }
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |v: &str| percent_decode(v);
        let user = match u.username() {
            "" => std::env::var("USER").unwrap_or_else(|_| "postgres".into()),
            name => decode(name),
        };
        let database = match u.path().trim_start_matches('/') {
            "" => user.clone(),
            db => decode(db),
        };
        let mut opts = ConnOpts {
            host,
            port: u.port().unwrap_or(5432),
            password: u.password().map(decode),
            user,
            database,
            sslmode: SslMode::Prefer,
            application_name: None,
        };
        for (k, v) in u.query_pairs() {
            match &*k {
                "sslmode" => {
                    opts.sslmode = match &*v {
                        "disable" | "allow" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" | "verify-ca" | "verify-full" => SslMode::Require,
                        other => return Err(err(&format!("unknown sslmode {other:?}"))),
                    }
                }
                "application_name" => opts.application_name = Some(v.into_owned()),
                _ => {}
            }
        }
        Ok(opts)
    }

    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without its password, for messages.
    pub fn display(&self) -> String {
        let pw = if self.password.is_some() { ":***" } else { "" };
        format!(
            "postgres://{}{pw}@{}/{}",
            self.user,
            self.addr(),
            self.database
        )
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Masks the password of anything that looks like a URL.
pub fn mask(s: &str) -> String {
    match url::Url::parse(s) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let o = ConnOpts::parse("postgres://alice:s%40cret@db.example:6543/shop?sslmode=require")
            .unwrap();
        assert_eq!(
            (o.user.as_str(), o.password.as_deref(), o.port),
            ("alice", Some("s@cret"), 6543)
        );
        assert_eq!((o.database.as_str(), o.sslmode), ("shop", SslMode::Require));
        assert_eq!(o.display(), "postgres://alice:***@db.example:6543/shop");
        let e = ConnOpts::parse("mysql://bob:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mysql://bob:***@h/db") && !e.contains(":pw@"),
            "{e}"
        );
    }
}
