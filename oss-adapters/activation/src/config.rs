//! `ActivationConfig`: which adapter to use and its settings, read from a TOML file (one
//! `[http]` or one `[spool]` table; README.md, "Configuration"). Unknown keys are refused
//! so a typo is not silently a default; every number is bounded and a bad one is named
//! by its TOML path. Credentials are [`Secret`]s: the configuration's `Debug` redacts them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ActivationError, Secret};

/// Longest per-attempt timeout, in milliseconds (5 minutes).
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// Most attempts one `activate` call makes before answering `Transient`.
pub const MAX_ATTEMPTS: u32 = 10;
/// Longest backoff between two attempts of one call, in milliseconds (5 minutes).
pub const MAX_BACKOFF_MS: u64 = 300_000;
/// Most idle connections kept to the gateway.
pub const MAX_IDLE_CONNECTIONS: usize = 1024;
/// Longest an idle connection is kept, in milliseconds (1 hour).
pub const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;
/// Longest the spool adapter waits for a result file, in milliseconds (10 minutes).
pub const MAX_RESULT_TIMEOUT_MS: u64 = 600_000;
/// Longest interval between two looks for a result file, in milliseconds.
pub const MAX_POLL_INTERVAL_MS: u64 = 10_000;
/// Largest configuration file, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// The activation adapter and its settings: exactly one of the `[http]` and `[spool]`
/// tables.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationConfig {
    Http(HttpConfig),
    Spool(SpoolConfig),
}

/// How the gateway authenticates this client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "scheme", rename_all = "lowercase", deny_unknown_fields)]
pub enum GatewayAuth {
    /// `Authorization: Basic base64(username:password)` (RFC 7617).
    Basic { username: String, password: Secret },
    /// `Authorization: Bearer TOKEN` (RFC 6750).
    Bearer { token: Secret },
}

/// The HTTP/JSON adapter's settings (`[http]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where commands are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// Credentials; none when the gateway authenticates by TLS client certificate or not at all.
    #[serde(default)]
    pub auth: Option<GatewayAuth>,
    /// One attempt's bound, from connecting to the last byte of the answer.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per `activate` call (1: no retry inside the call).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// The backoff before the second attempt; it doubles per attempt, with jitter.
    #[serde(default = "defaults::backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// The longest backoff; a `Retry-After` longer than this ends the call as `Transient`.
    #[serde(default = "defaults::backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Idle connections kept open for reuse.
    #[serde(default = "defaults::max_idle_connections")]
    pub max_idle_connections: usize,
    /// How long an idle connection is kept.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// PEM file of the CA certificates the gateway's certificate must chain to (required
    /// for an `https://` URL: a provisioning gateway is on the operator's own PKI).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the gateway (mutual TLS), with its key.
    #[serde(default)]
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_client_cert_file`.
    #[serde(default)]
    pub tls_client_key_file: Option<PathBuf>,
}

/// The spool adapter's settings (`[spool]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Where command files are written; it must exist.
    pub directory: PathBuf,
    /// Where the gateway writes `<id>.ok` / `<id>.err`; none: a command durably handed
    /// over counts as done.
    #[serde(default)]
    pub results_directory: Option<PathBuf>,
    /// How long one `activate` call waits for a result file before answering `Transient`.
    #[serde(default = "defaults::result_timeout_ms")]
    pub result_timeout_ms: u64,
    /// How often the results directory is looked at while waiting.
    #[serde(default = "defaults::poll_interval_ms")]
    pub poll_interval_ms: u64,
}

mod defaults {
    pub(super) fn timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn max_attempts() -> u32 {
        4
    }
    pub(super) fn backoff_initial_ms() -> u64 {
        200
    }
    pub(super) fn backoff_max_ms() -> u64 {
        5_000
    }
    pub(super) fn max_idle_connections() -> usize {
        32
    }
    pub(super) fn idle_timeout_ms() -> u64 {
        90_000
    }
    pub(super) fn result_timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn poll_interval_ms() -> u64 {
        100
    }
}

fn within(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ActivationError> {
    if value < min || value > max {
        return Err(ActivationError::config(field, format!("must be {min} to {max}, not {value}")));
    }
    Ok(())
}

impl HttpConfig {
    /// The settings for `url` with the defaults and no credentials.
    pub fn new(url: impl Into<String>) -> HttpConfig {
        HttpConfig {
            url: url.into(),
            auth: None,
            timeout_ms: defaults::timeout_ms(),
            max_attempts: defaults::max_attempts(),
            backoff_initial_ms: defaults::backoff_initial_ms(),
            backoff_max_ms: defaults::backoff_max_ms(),
            max_idle_connections: defaults::max_idle_connections(),
            idle_timeout_ms: defaults::idle_timeout_ms(),
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ActivationError> {
        let uri: hyper::Uri =
            self.url.parse().map_err(|err| ActivationError::config("http.url", format!("{:?}: {err}", self.url)))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ActivationError::config("http.url", "must start with http:// or https://")),
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(ActivationError::config("http.url", "names no host"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ActivationError::config("http.url", "must not hold credentials: use http.auth"));
        }
        match &self.auth {
            Some(GatewayAuth::Basic { username, password }) => {
                if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
                    return Err(ActivationError::config("http.auth.username", "must be non-empty, without ':'"));
                }
                if password.expose().chars().any(char::is_control) {
                    return Err(ActivationError::config("http.auth.password", "must not hold control characters"));
                }
            }
            Some(GatewayAuth::Bearer { token }) => {
                // RFC 6750 b64token: what may follow "Bearer " in a header.
                let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
                if token.is_empty() || !token.expose().chars().all(b64token) {
                    return Err(ActivationError::config(
                        "http.auth.token",
                        "must be non-empty letters, digits and - . _ ~ + / =",
                    ));
                }
            }
            None => {}
        }
        within("http.timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        within("http.max_attempts", u64::from(self.max_attempts), 1, u64::from(MAX_ATTEMPTS))?;
        within("http.backoff_max_ms", self.backoff_max_ms, 1, MAX_BACKOFF_MS)?;
        within("http.backoff_initial_ms", self.backoff_initial_ms, 1, self.backoff_max_ms)?;
        within("http.max_idle_connections", self.max_idle_connections as u64, 0, MAX_IDLE_CONNECTIONS as u64)?;
        within("http.idle_timeout_ms", self.idle_timeout_ms, 1, MAX_IDLE_TIMEOUT_MS)?;
        if https && self.tls_ca_file.is_none() {
            return Err(ActivationError::config("http.tls_ca_file", "an https:// URL needs the gateway's CA file"));
        }
        if !https && (self.tls_ca_file.is_some() || self.tls_client_cert_file.is_some()) {
            return Err(ActivationError::config("http.url", "TLS files are given but the URL is http://"));
        }
        if self.tls_client_cert_file.is_some() != self.tls_client_key_file.is_some() {
            return Err(ActivationError::config(
                "http.tls_client_key_file",
                "a client certificate and its key go together",
            ));
        }
        Ok(())
    }
}

impl SpoolConfig {
    /// The settings for `directory` with the defaults and no results directory.
    pub fn new(directory: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            directory: directory.into(),
            results_directory: None,
            result_timeout_ms: defaults::result_timeout_ms(),
            poll_interval_ms: defaults::poll_interval_ms(),
        }
    }

    /// Checks every field; the error names the first bad one. The directories are checked
    /// when the adapter is built.
    pub fn validate(&self) -> Result<(), ActivationError> {
        if self.directory.as_os_str().is_empty() {
            return Err(ActivationError::config("spool.directory", "is empty"));
        }
        if self.results_directory.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(ActivationError::config("spool.results_directory", "is empty"));
        }
        within("spool.result_timeout_ms", self.result_timeout_ms, 0, MAX_RESULT_TIMEOUT_MS)?;
        within("spool.poll_interval_ms", self.poll_interval_ms, 1, MAX_POLL_INTERVAL_MS)?;
        Ok(())
    }
}

impl ActivationConfig {
    /// Parses and checks a configuration; `path` names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<ActivationConfig, ActivationError> {
        let file_error = |message: String| ActivationError::ConfigFile { path: path.to_owned(), message };
        // serde's "wanted exactly 1 element" says too little: name the tables first.
        let table: toml::Table = toml::from_str(text).map_err(|err| file_error(err.to_string()))?;
        if table.len() != 1 {
            let found: Vec<String> = table.keys().map(|key| format!("[{key}]")).collect();
            let found = if found.is_empty() { "none".to_owned() } else { found.join(", ") };
            return Err(file_error(format!("needs exactly one of the tables [http] and [spool], found {found}")));
        }
        let config: ActivationConfig = toml::from_str(text).map_err(|err| file_error(err.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and checks a configuration file (at most [`MAX_CONFIG_BYTES`]).
    pub fn load(path: &Path) -> Result<ActivationConfig, ActivationError> {
        let io = |source| ActivationError::Io { what: "activation configuration", path: path.to_owned(), source };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ActivationError::ConfigFile {
                path: path.to_owned(),
                message: format!("{size} bytes, more than the {MAX_CONFIG_BYTES} allowed"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        ActivationConfig::from_toml(&text, path)
    }

    pub fn validate(&self) -> Result<(), ActivationError> {
        match self {
            ActivationConfig::Http(http) => http.validate(),
            ActivationConfig::Spool(spool) => spool.validate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ActivationConfig, String> {
        ActivationConfig::from_toml(text, Path::new("activation.toml")).map_err(|err| err.to_string())
    }

    #[test]
    fn an_http_table_with_defaults_and_bearer_credentials() {
        let config = parse(
            "[http]\nurl = \"http://127.0.0.1:8080/activation/v1/commands\"\ntimeout_ms = 2000\n\
             [http.auth]\nscheme = \"bearer\"\ntoken = \"abc.def-123\"\n",
        )
        .expect("valid");
        let ActivationConfig::Http(http) = &config else { panic!("http expected: {config:?}") };
        assert_eq!(http.timeout_ms, 2000);
        assert_eq!(http.max_attempts, 4);
        assert_eq!(http.auth, Some(GatewayAuth::Bearer { token: Secret::new("abc.def-123") }));
        let shown = format!("{config:?}");
        assert!(!shown.contains("abc.def-123") && shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_spool_table() {
        let config = parse("[spool]\ndirectory = \"/var/spool/act\"\nresults_directory = \"/var/spool/act-results\"\n");
        let expected = SpoolConfig {
            results_directory: Some(PathBuf::from("/var/spool/act-results")),
            ..SpoolConfig::new("/var/spool/act")
        };
        assert_eq!(config, Ok(ActivationConfig::Spool(expected)));
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_field() {
        let check = |text: &str, expected: &str| {
            let error = parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        };
        let url = "[http]\nurl = \"http://gw:8080/a\"\n";
        check(&format!("{url}timeout_ms = 0\n"), "http.timeout_ms: must be 1 to 300000, not 0");
        check(&format!("{url}max_attempts = 11\n"), "http.max_attempts: must be 1 to 10, not 11");
        check(&format!("{url}backoff_initial_ms = 9000\n"), "http.backoff_initial_ms: must be 1 to 5000, not 9000");
        check(&format!("{url}timeout = 5\n"), "unknown field `timeout`");
        check(&format!("{url}[http.auth]\nscheme = \"digest\"\n"), "unknown variant `digest`");
        check(&format!("{url}[http.auth]\nscheme = \"bearer\"\ntoken = \"a b\"\n"), "http.auth.token");
        check(
            &format!("{url}[http.auth]\nscheme = \"basic\"\nusername = \"a:b\"\npassword = \"p\"\n"),
            "http.auth.username",
        );
        check(&format!("{url}tls_ca_file = \"/ca.pem\"\n"), "http.url: TLS files are given but the URL is http://");
        check("[http]\nurl = \"https://gw/a\"\n", "http.tls_ca_file: an https:// URL needs the gateway's CA file");
        check("[http]\nurl = \"ftp://gw/a\"\n", "http.url: must start with http:// or https://");
        check("[http]\nurl = \"http://user:pw@gw/a\"\n", "http.url: must not hold credentials");
        check("[spool]\ndirectory = \"/d\"\npoll_interval_ms = 0\n", "spool.poll_interval_ms: must be 1 to 10000");
        check(
            "[spool]\ndirectory = \"/d\"\n[http]\nurl = \"http://gw/a\"\n",
            "activation.toml: needs exactly one of the tables [http] and [spool], found [http], [spool]",
        );
        check("", "found none");
        check("[ftp]\nurl = 1\n", "unknown variant `ftp`, expected `http` or `spool`");
        check("[http]\nurl = \"http://gw/a\"\ntimeout_ms = -1\n", "line 3, column 14");
    }

    #[test]
    fn a_file_is_read_bounded_and_named_in_errors() {
        let scratch = crate::testing::ScratchDir::new("config").expect("scratch");
        let path = scratch.path().join("activation.toml");
        std::fs::write(&path, "[spool]\ndirectory = \"/d\"\n").expect("write");
        assert_eq!(ActivationConfig::load(&path).ok(), Some(ActivationConfig::Spool(SpoolConfig::new("/d"))));
        std::fs::write(&path, "#".repeat(70_000)).expect("write");
        let error = ActivationConfig::load(&path).expect_err("too large").to_string();
        assert!(error.ends_with("activation.toml: 70000 bytes, more than the 65536 allowed"), "{error}");
        let missing = scratch.path().join("missing.toml");
        let error = ActivationConfig::load(&missing).expect_err("missing").to_string();
        assert!(error.starts_with(&format!("activation configuration {}: ", missing.display())), "{error}");
    }
}
