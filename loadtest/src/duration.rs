//! Human durations (`10s`, `500ms`, `2m`, `1h`, `1m30s`, bare seconds) for the CLI and scenarios.

use std::time::Duration;

use crate::Error;

/// Parses `10s`, `500ms`, `2m`, `1h`, `1m30s`, `250us` or a bare number of seconds (`1.5`).
///
/// # Errors
/// [`Error::Duration`] saying what is wrong with the text.
pub fn parse(text: &str) -> Result<Duration, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Duration("empty duration".into()));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return from_secs(secs, text);
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() {
            return Err(Error::Duration(format!(
                "`{text}`: expected a number before `{tail}`"
            )));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num
            .parse()
            .map_err(|_| Error::Duration(format!("`{text}`: bad number `{num}`")))?;
        let scale = match unit {
            "h" => 3600.0,
            "m" | "min" => 60.0,
            "s" | "" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            other => {
                return Err(Error::Duration(format!(
                    "`{text}`: unknown unit `{other}` (use h, m, s, ms or us)"
                )));
            }
        };
        total += value * scale;
        rest = tail;
    }
    from_secs(total, text)
}

fn from_secs(secs: f64, text: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::Duration(format!("`{text}`: not a valid duration")))
}

/// serde adapter: a duration written as a string (`"10s"`) or a number of seconds.
pub(crate) mod serde_human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error as _};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => super::parse(&t).map_err(D::Error::custom),
            Raw::Secs(s) => super::from_secs(s, &s.to_string()).map_err(D::Error::custom),
        }
    }

    pub(crate) mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("250us").unwrap(), Duration::from_micros(250));
        for (bad, said) in [
            ("10x", "`10x`: unknown unit `x` (use h, m, s, ms or us)"),
            ("", "empty duration"),
            ("-1", "`-1`: not a valid duration"),
            ("s", "`s`: expected a number before `s`"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(&e, Error::Duration(_)), "{e:?}");
            assert_eq!(e.to_string(), said);
        }
    }
}
