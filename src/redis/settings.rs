//! Feast's Redis `connection_string`, parsed the way Feast parses it:
//! `host:port[,host2:port2...][,key=value...]`, where a part without `=` is a node and a
//! value is read as JSON when it is JSON (`ssl=true`, `db=0`) and as text otherwise.
//! Feast hands the keys to redis-py as keyword arguments; the ones that mean something
//! to this store are accepted and anything else is refused by name.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::client::RetryPolicy;
use super::connection::Timeouts;
use super::near_cache::NearCacheConfig;

/// A password or other secret: kept out of `Debug` output and error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    Cluster,
    /// The nodes are sentinels; the master is found by its name.
    Sentinel {
        master_name: String,
    },
}

impl Topology {
    /// The topology Feast's `redis_type` names (`sentinel_master` matters for sentinels only).
    pub fn from_redis_type(redis_type: &str, sentinel_master: &str) -> Result<Self, SettingsError> {
        match redis_type {
            "redis" => Ok(Self::Standalone),
            "redis_cluster" => Ok(Self::Cluster),
            "redis_sentinel" => Ok(Self::Sentinel {
                master_name: sentinel_master.to_owned(),
            }),
            other => Err(SettingsError::UnknownRedisType(other.to_owned())),
        }
    }

    /// Feast's `redis_type` name of this topology.
    pub fn redis_type(&self) -> &'static str {
        match self {
            Self::Standalone => "redis",
            Self::Cluster => "redis_cluster",
            Self::Sentinel { .. } => "redis_sentinel",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// Verify the server's certificate (`ssl_cert_reqs=none` turns it off).
    pub verify_certificate: bool,
    /// Check that the certificate names the host (`ssl_check_hostname`).
    pub check_hostname: bool,
    /// PEM file of the CA that signed the server's certificate (`ssl_ca_certs`);
    /// the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key for mutual TLS (`ssl_certfile`, `ssl_keyfile`).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            verify_certificate: true,
            check_hostname: true,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub topology: Topology,
    /// `(host, port)` of each node given; one for standalone, any for cluster seeds
    /// and sentinels. A Unix socket is `(path, 0)`.
    pub nodes: Vec<(String, u16)>,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<TlsSettings>,
    pub client_name: Option<String>,
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
}

/// The store config's own keys that refine the connection string; each wins over the
/// string's equivalent (`socket_timeout`, `ssl_ca_certs`, ...) when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub connect_timeout: Option<Duration>,
    pub command_timeout: Option<Duration>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_check_hostname: Option<bool>,
}

/// What a client is built from: the store config's connection keys.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub connection_string: String,
    /// Feast's `redis_type`: `redis`, `redis_cluster` or `redis_sentinel`.
    pub redis_type: String,
    pub sentinel_master: String,
    pub overrides: Overrides,
    pub retry: RetryPolicy,
    pub near_cache: Option<NearCacheConfig>,
    /// Requests of threads with their own runtimes (Python callers) in flight together
    /// share a connection per node and its writes.
    pub auto_pipelining: bool,
}

impl ClientConfig {
    /// The connection settings this config describes, or an error naming the key at fault.
    pub fn settings(&self) -> Result<ConnectionSettings, SettingsError> {
        let topology = Topology::from_redis_type(&self.redis_type, &self.sentinel_master)?;
        let mut settings = ConnectionSettings::parse(&self.connection_string, topology)?;
        settings.apply(self.overrides.clone())?;
        Ok(settings)
    }
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SettingsError {
    #[error("redis_type '{0}' is not one of redis, redis_cluster, redis_sentinel")]
    UnknownRedisType(String),

    #[error("{key} is set but TLS is off: add ssl=true to connection_string")]
    TlsOff { key: &'static str },

    #[error("connection_string has no host:port; write it as 'host:port[,key=value...]', e.g. 'localhost:6379,db=0'")]
    NoNodes,

    // The part itself is not repeated: a password containing ',' splits into parts too.
    #[error(
        "connection_string: part {0} (counting from 1, split at ',') is neither host:port nor key=value; \
         a password cannot contain ','"
    )]
    BadNode(usize),

    #[error("connection_string: a standalone Redis takes one host:port, but {0} were given; set redis_type: redis_cluster or redis_sentinel for several")]
    TooManyNodes(usize),

    #[error("connection_string: unknown key '{key}'; supported keys: {supported}")]
    UnknownKey { key: String, supported: &'static str },

    #[error("connection_string: '{key}' is given twice")]
    DuplicateKey { key: String },

    #[error("connection_string: '{key}' must be {expected}")]
    BadValue { key: String, expected: &'static str },

    #[error("connection_string: '{key}' cannot be used with redis_type: {topology}")]
    NotForTopology { key: String, topology: &'static str },
}

const SUPPORTED_KEYS: &str = "ssl, password, username, db, ssl_cert_reqs, ssl_check_hostname, \
    ssl_ca_certs, ssl_certfile, ssl_keyfile, client_name, socket_timeout, socket_connect_timeout, \
    skip_full_coverage_check, unix_socket_path";

const DEFAULT_PORT: u16 = 6379;

/// One `key=value` parameter with the value as Feast's `json.loads` attempt leaves it.
#[derive(Debug, Clone, PartialEq)]
enum ParamValue {
    Bool(bool),
    Number(f64),
    Text(String),
    Null,
}

impl ParamValue {
    fn parse(raw: &str) -> Self {
        match raw.trim() {
            "true" => Self::Bool(true),
            "false" => Self::Bool(false),
            "null" => Self::Null,
            trimmed => match trimmed.parse::<f64>() {
                // JSON numbers only: no 'inf', 'nan', leading '+' or '.5' forms.
                Ok(number) if number.is_finite() && is_json_number(trimmed) => Self::Number(number),
                _ => match trimmed.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(inner) => Self::Text(inner.to_owned()),
                    None => Self::Text(raw.to_owned()),
                },
            },
        }
    }
}

fn is_json_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let first = digits.chars().next();
    matches!(first, Some('0'..='9'))
        && !(digits.starts_with('0') && digits.len() > 1 && digits.as_bytes()[1].is_ascii_digit())
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
}

impl ConnectionSettings {
    /// Lets the config's own keys win over the connection string's. TLS keys need TLS on.
    pub fn apply(&mut self, overrides: Overrides) -> Result<(), SettingsError> {
        let Overrides {
            connect_timeout,
            command_timeout,
            tls_ca_file,
            tls_cert_file,
            tls_key_file,
            tls_check_hostname,
        } = overrides;
        self.connect_timeout = connect_timeout.or(self.connect_timeout);
        self.command_timeout = command_timeout.or(self.command_timeout);
        let Some(tls) = self.tls.as_mut() else {
            let given = [
                ("tls_ca_file", tls_ca_file.is_some()),
                ("tls_cert_file", tls_cert_file.is_some()),
                ("tls_key_file", tls_key_file.is_some()),
                ("tls_check_hostname", tls_check_hostname.is_some()),
            ];
            return match given.iter().find(|(_, given)| *given) {
                Some((key, _)) => Err(SettingsError::TlsOff { key }),
                None => Ok(()),
            };
        };
        tls.ca_file = tls_ca_file.or(tls.ca_file.take());
        tls.client_cert_file = tls_cert_file.or(tls.client_cert_file.take());
        tls.client_key_file = tls_key_file.or(tls.client_key_file.take());
        tls.check_hostname = tls_check_hostname.unwrap_or(tls.check_hostname);
        Ok(())
    }

    /// The timeouts to use: the configured ones, else 5 s to connect and 10 s per command.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command: self.command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        }
    }

    /// `redis_type at host:port,...`: what a client is connected to, without secrets.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|(host, port)| match port {
                0 => format!("unix://{host}"),
                _ => format!("{host}:{port}"),
            })
            .collect();
        format!("{} at {}", self.topology.redis_type(), nodes.join(","))
    }

    /// Parses `connection_string` for `topology`. Errors name the part or key at fault and
    /// never repeat a password.
    pub fn parse(connection_string: &str, topology: Topology) -> Result<Self, SettingsError> {
        let mut settings = ConnectionSettings {
            topology,
            nodes: Vec::new(),
            db: 0,
            username: None,
            password: None,
            tls: None,
            client_name: None,
            connect_timeout: None,
            command_timeout: None,
        };
        let mut ssl = false;
        let mut tls = TlsSettings::default();
        let mut tls_keys_given = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        let mut unix_socket: Option<String> = None;

        for (index, part) in connection_string.split(',').enumerate() {
            let Some((key, raw)) = part.split_once('=') else {
                if let Some(path) = part.trim().strip_prefix("unix://") {
                    if path.is_empty() || unix_socket.replace(path.to_owned()).is_some() {
                        return Err(SettingsError::BadNode(index + 1));
                    }
                } else if !part.trim().is_empty() {
                    let node = parse_node(part).ok_or(SettingsError::BadNode(index + 1))?;
                    settings.nodes.push(node);
                }
                continue;
            };
            let key = key.trim().to_owned();
            if seen.contains(&key) {
                return Err(SettingsError::DuplicateKey { key });
            }
            seen.push(key.clone());
            let value = ParamValue::parse(raw);
            match key.as_str() {
                "ssl" => ssl = boolean(&key, &value)?,
                // Feast reads a quoted password as JSON text and hands anything else to
                // redis-py, which turns it into text: so only quotes are stripped.
                "password" => {
                    let password = match value {
                        ParamValue::Text(text) => text,
                        _ => raw.trim().to_owned(),
                    };
                    settings.password = Some(Secret::new(password));
                }
                "username" => settings.username = Some(text(&key, value)?),
                "db" => settings.db = integer(&key, &value)?,
                "client_name" => settings.client_name = Some(text(&key, value)?),
                "socket_timeout" => settings.command_timeout = seconds(&key, &value)?,
                "socket_connect_timeout" => settings.connect_timeout = seconds(&key, &value)?,
                "ssl_cert_reqs" => {
                    tls.verify_certificate = match &value {
                        ParamValue::Text(t) if t.eq_ignore_ascii_case("none") => false,
                        ParamValue::Null => false,
                        ParamValue::Text(t) if t.eq_ignore_ascii_case("required") => true,
                        _ => {
                            return Err(SettingsError::BadValue {
                                key,
                                expected: "'required' or 'none'",
                            })
                        }
                    };
                    tls_keys_given.push(key);
                }
                "ssl_check_hostname" => {
                    tls.check_hostname = boolean(&key, &value)?;
                    tls_keys_given.push(key);
                }
                "ssl_ca_certs" => {
                    tls.ca_file = Some(PathBuf::from(text(&key, value)?));
                    tls_keys_given.push(key);
                }
                "ssl_certfile" => {
                    tls.client_cert_file = Some(PathBuf::from(text(&key, value)?));
                    tls_keys_given.push(key);
                }
                "ssl_keyfile" => {
                    tls.client_key_file = Some(PathBuf::from(text(&key, value)?));
                    tls_keys_given.push(key);
                }
                // redis-py's name for it: the same string works with stock Feast.
                "unix_socket_path" => {
                    let path = text(&key, value)?;
                    if unix_socket.replace(path).is_some() {
                        return Err(SettingsError::DuplicateKey { key });
                    }
                }
                // redis-py's cluster client option; this store always maps every slot.
                "skip_full_coverage_check" => {
                    boolean(&key, &value)?;
                }
                _ => {
                    return Err(SettingsError::UnknownKey {
                        key,
                        supported: SUPPORTED_KEYS,
                    })
                }
            }
        }

        if let Some(path) = unix_socket {
            // As redis-py: the socket wins over a host:port given beside it.
            if settings.topology != Topology::Standalone {
                return Err(SettingsError::NotForTopology {
                    key: "unix_socket_path".into(),
                    topology: "redis_cluster or redis_sentinel (a Unix socket reaches one local server)",
                });
            }
            if ssl {
                return Err(SettingsError::BadValue {
                    key: "ssl".into(),
                    expected: "false with a Unix socket (it never leaves the host)",
                });
            }
            settings.nodes = vec![(path, 0)];
        }
        if settings.nodes.is_empty() {
            return Err(SettingsError::NoNodes);
        }
        if settings.topology == Topology::Standalone && settings.nodes.len() > 1 {
            return Err(SettingsError::TooManyNodes(settings.nodes.len()));
        }
        if settings.topology == Topology::Cluster && settings.db != 0 {
            return Err(SettingsError::NotForTopology {
                key: "db".into(),
                topology: "redis_cluster (a cluster has only db 0)",
            });
        }
        if ssl {
            settings.tls = Some(tls);
        } else if let Some(key) = tls_keys_given.into_iter().next() {
            return Err(SettingsError::BadValue {
                key,
                expected: "used together with ssl=true",
            });
        }
        Ok(settings)
    }
}

fn parse_node(part: &str) -> Option<(String, u16)> {
    let part = part.trim();
    let (host, port) = match part.rsplit_once(':') {
        // A bracketed IPv6 address: [::1]:6379.
        Some((host, port)) if !host.contains(':') || (host.starts_with('[') && host.ends_with(']')) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse::<u16>().ok()?,
        ),
        Some(_) => return None,
        None => (part, DEFAULT_PORT),
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    (valid_host && port != 0).then(|| (host.to_owned(), port))
}

fn boolean(key: &str, value: &ParamValue) -> Result<bool, SettingsError> {
    match value {
        ParamValue::Bool(b) => Ok(*b),
        ParamValue::Text(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        ParamValue::Text(t) if t.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(SettingsError::BadValue {
            key: key.to_owned(),
            expected: "true or false",
        }),
    }
}

fn integer(key: &str, value: &ParamValue) -> Result<i64, SettingsError> {
    match value {
        ParamValue::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 1e15 => Ok(*n as i64),
        _ => Err(SettingsError::BadValue {
            key: key.to_owned(),
            expected: "a whole number of 0 or more",
        }),
    }
}

fn seconds(key: &str, value: &ParamValue) -> Result<Option<Duration>, SettingsError> {
    match value {
        ParamValue::Null => Ok(None),
        ParamValue::Number(n) if *n > 0.0 && *n < 1e9 => Ok(Some(Duration::from_secs_f64(*n))),
        _ => Err(SettingsError::BadValue {
            key: key.to_owned(),
            expected: "a number of seconds greater than 0",
        }),
    }
}

fn text(key: &str, value: ParamValue) -> Result<String, SettingsError> {
    match value {
        ParamValue::Text(t) if !t.is_empty() => Ok(t),
        _ => Err(SettingsError::BadValue {
            key: key.to_owned(),
            expected: "a non-empty text",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone(s: &str) -> Result<ConnectionSettings, SettingsError> {
        ConnectionSettings::parse(s, Topology::Standalone)
    }

    #[test]
    fn config_keys_win_over_the_string_and_need_tls() {
        let overrides = Overrides {
            command_timeout: Some(Duration::from_secs(2)),
            tls_ca_file: Some("ca.pem".into()),
            tls_check_hostname: Some(false),
            ..Overrides::default()
        };
        let config = |connection_string: &str, redis_type: &str, overrides: &Overrides| ClientConfig {
            connection_string: connection_string.into(),
            redis_type: redis_type.into(),
            sentinel_master: "mymaster".into(),
            overrides: overrides.clone(),
            retry: RetryPolicy {
                retries: 0,
                backoff: Duration::ZERO,
            },
            near_cache: None,
            auto_pipelining: false,
        };
        let settings = config(
            "h:6380,ssl=true,ssl_ca_certs=other.pem,socket_timeout=7,socket_connect_timeout=3",
            "redis",
            &overrides,
        )
        .settings()
        .unwrap();
        let tls = settings.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert!(!tls.check_hostname);
        let timeouts = settings.timeouts();
        assert_eq!(
            (timeouts.connect, timeouts.command),
            (Duration::from_secs(3), Duration::from_secs(2))
        );
        assert_eq!(settings.describe(), "redis at h:6380");

        let defaults = config("h:1", "redis_cluster", &Overrides::default())
            .settings()
            .unwrap();
        let timeouts = defaults.timeouts();
        assert_eq!(
            (timeouts.connect, timeouts.command),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        assert_eq!(
            config("h:1", "redis", &overrides).settings(),
            Err(SettingsError::TlsOff { key: "tls_ca_file" })
        );
        assert_eq!(
            config("h:1", "memcached", &Overrides::default()).settings(),
            Err(SettingsError::UnknownRedisType("memcached".into()))
        );
    }

    #[test]
    fn host_and_port() {
        let settings = standalone("localhost:6380").unwrap();
        assert_eq!(settings.nodes, vec![("localhost".to_owned(), 6380)]);
        assert_eq!(settings.db, 0);
        assert_eq!(settings.tls, None);
        assert_eq!(
            standalone("redis-host").unwrap().nodes,
            vec![("redis-host".to_owned(), 6379)]
        );
        assert_eq!(
            standalone("[::1]:7000").unwrap().nodes,
            vec![("::1".to_owned(), 7000)]
        );
    }

    #[test]
    fn elasticache_style_string() {
        let settings = ConnectionSettings::parse(
            "clustercfg.feast.abc123.use1.cache.amazonaws.com:6379,ssl=true,password=s3cr=t,username=feast",
            Topology::Cluster,
        )
        .unwrap();
        assert_eq!(settings.nodes.len(), 1);
        assert_eq!(settings.tls, Some(TlsSettings::default()));
        assert_eq!(settings.password.as_ref().map(Secret::expose), Some("s3cr=t"));
        assert_eq!(settings.username.as_deref(), Some("feast"));
    }

    #[test]
    fn several_cluster_seeds_and_parameters() {
        let settings = ConnectionSettings::parse(
            "redis1:6379,redis2:6379,skip_full_coverage_check=true,ssl=true,ssl_cert_reqs=none,socket_timeout=2.5,socket_connect_timeout=1",
            Topology::Cluster,
        )
        .unwrap();
        assert_eq!(settings.nodes.len(), 2);
        assert!(!settings.tls.as_ref().unwrap().verify_certificate);
        assert_eq!(settings.command_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(settings.connect_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn db_and_tls_files() {
        let settings =
            standalone("h:1,db=3,ssl=true,ssl_ca_certs=/etc/ca.pem,ssl_check_hostname=false").unwrap();
        assert_eq!(settings.db, 3);
        let tls = settings.tls.unwrap();
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!tls.check_hostname);
        assert!(tls.verify_certificate);
    }

    #[test]
    fn unix_sockets_are_standalone_and_plain() {
        for given in [
            "unix:///run/redis.sock,db=1",
            "localhost:6379,unix_socket_path=/run/redis.sock,db=1",
        ] {
            let settings = standalone(given).unwrap();
            assert_eq!(settings.nodes, vec![("/run/redis.sock".to_owned(), 0)]);
            assert_eq!(settings.db, 1);
            assert_eq!(settings.describe(), "redis at unix:///run/redis.sock");
        }
        assert!(matches!(
            ConnectionSettings::parse("unix_socket_path=/s", Topology::Cluster),
            Err(SettingsError::NotForTopology { key, .. }) if key == "unix_socket_path"
        ));
        assert!(matches!(
            standalone("unix:///s,ssl=true"),
            Err(SettingsError::BadValue { key, .. }) if key == "ssl"
        ));
        assert!(matches!(standalone("unix://"), Err(SettingsError::BadNode(1))));
    }

    #[test]
    fn errors_name_the_key_or_part() {
        let unknown = standalone("h:1,decode_responses=true").unwrap_err();
        assert!(
            unknown.to_string().contains("unknown key 'decode_responses'"),
            "{unknown}"
        );
        assert_eq!(
            standalone("h:1,db=x").unwrap_err().to_string(),
            "connection_string: 'db' must be a whole number of 0 or more"
        );
        assert_eq!(standalone("h:port").unwrap_err(), SettingsError::BadNode(1));
        assert_eq!(
            standalone("h:1,db=1,h2:0").unwrap_err(),
            SettingsError::BadNode(3)
        );
        assert_eq!(standalone("db=1").unwrap_err(), SettingsError::NoNodes);
        assert_eq!(standalone("a:1,b:2").unwrap_err(), SettingsError::TooManyNodes(2));
        assert!(
            matches!(standalone("h:1,ssl=yes"), Err(SettingsError::BadValue { key, .. }) if key == "ssl")
        );
        assert!(
            matches!(standalone("h:1,ssl_ca_certs=/ca.pem"), Err(SettingsError::BadValue { key, .. }) if key == "ssl_ca_certs")
        );
        assert!(
            matches!(standalone("h:1,db=1,db=2"), Err(SettingsError::DuplicateKey { key }) if key == "db")
        );
        assert!(ConnectionSettings::parse("h:1,db=1", Topology::Cluster).is_err());
        assert!(standalone("redis://localhost:6379").is_err());
    }

    #[test]
    fn quoted_and_numeric_passwords() {
        let split = standalone("h:1,password=\"p,w0rd\"").unwrap_err();
        assert_eq!(split, SettingsError::BadNode(3));
        assert!(!split.to_string().contains("w0rd"));
        let quoted = standalone("h:1,password=\"pw\"").unwrap();
        assert_eq!(quoted.password.unwrap().expose(), "pw");
        let numeric = standalone("h:1,password=1234").unwrap();
        assert_eq!(numeric.password.unwrap().expose(), "1234");
    }

    #[test]
    fn passwords_never_show() {
        let settings = standalone("h:1,password=hunter2").unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        let err = standalone("h:1,password=hunter2,bogus=1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn values_are_read_as_json_like_feast() {
        assert_eq!(ParamValue::parse("true"), ParamValue::Bool(true));
        assert_eq!(ParamValue::parse("0"), ParamValue::Number(0.0));
        assert_eq!(ParamValue::parse("-1.5e3"), ParamValue::Number(-1500.0));
        assert_eq!(ParamValue::parse("\"quoted\""), ParamValue::Text("quoted".into()));
        assert_eq!(ParamValue::parse("01"), ParamValue::Text("01".into()));
        assert_eq!(ParamValue::parse("inf"), ParamValue::Text("inf".into()));
        assert_eq!(ParamValue::parse("null"), ParamValue::Null);
    }
}
