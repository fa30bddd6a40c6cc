//! Loading TOML configuration files: every error names the file, and the key
//! or line that is wrong. Each binary defines its own `deny_unknown_fields`
//! structs and a `validate()` into typed values; this module does the I/O.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration error, always naming the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type…).
    /// The TOML error names the key and the line.
    #[error("{file}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with key and position.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The dotted key, e.g. `listen.udp`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// A validation error for `key` in `file`.
    pub fn invalid(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Reads and deserialises `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Deserialises `text`, attributing errors to `path` (which need not exist;
/// embedded defaults use a pseudo-path such as `<embedded lb.toml>`).
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " | "),
    })
}

/// Parses a human duration such as `500ms`, `2s`, `5m`, `1h` (a bare number
/// is seconds). Used by config structs through [`serde_duration`].
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 2s, 5m"))?;
    let d = match unit.trim() {
        "ms" => std::time::Duration::from_millis(n),
        "" | "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    Ok(d)
}

/// `#[serde(with = "sipedge_shared::config::serde_duration")]` for
/// `Duration` fields written as strings (`"500ms"`) or integers (seconds).
pub mod serde_duration {
    use serde::{de, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Str(String),
    }

    /// Deserialises a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Duration::from_secs(n)),
            Raw::Str(s) => super::parse_duration(&s).map_err(de::Error::custom),
        }
    }

    /// Serialises a duration as milliseconds (`"1500ms"`).
    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", v.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        #[serde(with = "serde_duration", default)]
        interval: std::time::Duration,
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse::<Demo>(Path::new("demo.toml"), "name = 'x'\nbogus = 1\n")
            .expect_err("unknown key must fail");
        let text = err.to_string();
        assert!(text.starts_with("demo.toml:"), "{text}");
        assert!(text.contains("bogus"), "{text}");
    }

    #[test]
    fn durations() {
        let d: Demo = parse(Path::new("d"), "name='x'\ninterval='500ms'").expect("valid");
        assert_eq!(d.interval, std::time::Duration::from_millis(500));
        for (s, ms) in [("2s", 2000), ("3", 3000), ("1m", 60_000), ("250ms", 250)] {
            assert_eq!(parse_duration(s).map(|d| d.as_millis()), Ok(ms), "{s}");
        }
        for bad in ["", "x", "5 parsecs", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
