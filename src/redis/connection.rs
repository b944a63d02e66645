//! Opening connections to one Redis node, and keeping one multiplexed connection per
//! node and calling thread, dropped when the thread exits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::thread::{self, ThreadId};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    Pipeline, RedisConnectionInfo, TlsCertificates, Value,
};

use super::error::ClientError;
use super::settings::{ConnectionSettings, Secret, TlsSettings};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` as Redis writes it in MOVED/ASK replies; an empty host means
    /// the host of the node that answered.
    pub fn parse_reply(text: &str, answered_by: &NodeAddr) -> Option<Self> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(if host.is_empty() {
            Self::new(answered_by.host.clone(), port)
        } else {
            Self::new(host, port)
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which kind of server a connection goes to. Sentinels get only the timeouts, as
/// redis-py's `Sentinel` gives them (no password, no TLS, no db).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Data,
    Sentinel,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

/// TLS as read from the files named in the settings, once.
#[derive(Clone)]
struct TlsMaterial {
    certificates: Option<TlsCertificates>,
    verify_certificate: bool,
    check_hostname: bool,
}

impl TlsMaterial {
    fn load(settings: &TlsSettings) -> Result<Self, ClientError> {
        // Another copy of rustls in the process may have installed one already: keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |setting: &'static str, path: &std::path::Path| {
            std::fs::read(path).map_err(|err| ClientError::TlsConfig {
                setting,
                reason: format!("cannot read {}: {err}", path.display()),
            })
        };
        let root_cert = settings
            .ca_file
            .as_deref()
            .map(|path| read("ssl_ca_certs", path))
            .transpose()?;
        let client_tls = match (&settings.client_cert_file, &settings.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read("ssl_certfile", cert)?,
                client_key: read("ssl_keyfile", key)?,
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ClientError::TlsConfig {
                    setting: "ssl_certfile/ssl_keyfile",
                    reason: "a client certificate needs both the certificate and its key".into(),
                })
            }
        };
        let certificates = (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        });
        Ok(Self {
            certificates,
            verify_certificate: settings.verify_certificate,
            check_hostname: settings.check_hostname,
        })
    }
}

/// Everything needed to open a connection to any node of the deployment.
#[derive(Clone)]
pub struct Connector {
    db: i64,
    username: Option<String>,
    password: Option<Secret>,
    client_name: Option<String>,
    tls: Option<TlsMaterial>,
    pub timeouts: Timeouts,
}

impl Connector {
    pub fn new(settings: &ConnectionSettings, timeouts: Timeouts) -> Result<Self, ClientError> {
        Ok(Self {
            db: settings.db,
            username: settings.username.clone(),
            password: settings.password.clone(),
            client_name: settings.client_name.clone(),
            tls: settings.tls.as_ref().map(TlsMaterial::load).transpose()?,
            timeouts,
        })
    }

    fn client(&self, addr: &NodeAddr, role: Role) -> Result<Client, ClientError> {
        let config_error = |err: ::redis::RedisError| ClientError::Connect {
            addr: addr.to_string(),
            reason: err.to_string(),
        };
        let mut redis_settings = RedisConnectionInfo::default().set_skip_set_lib_name();
        if role == Role::Data {
            redis_settings = redis_settings.set_db(self.db);
            if let Some(username) = &self.username {
                redis_settings = redis_settings.set_username(username);
            }
            if let Some(password) = &self.password {
                redis_settings = redis_settings.set_password(password.expose());
            }
        }
        let tls = self.tls.as_ref().filter(|_| role == Role::Data);
        let Some(tls) = tls else {
            let info = ConnectionAddr::Tcp(addr.host.clone(), addr.port)
                .into_connection_info()
                .map_err(config_error)?
                .set_redis_settings(redis_settings);
            return Client::open(info).map_err(config_error);
        };
        let address = ConnectionAddr::TcpTls {
            host: addr.host.clone(),
            port: addr.port,
            insecure: !tls.verify_certificate,
            tls_params: None,
        };
        let info = address
            .into_connection_info()
            .map_err(config_error)?
            .set_redis_settings(redis_settings);
        let info: ConnectionInfo = match &tls.certificates {
            Some(certificates) => Client::build_with_tls(info, certificates.clone())
                .map_err(|err| ClientError::TlsConfig {
                    setting: "ssl_ca_certs/ssl_certfile/ssl_keyfile",
                    reason: err.to_string(),
                })?
                .get_connection_info()
                .clone(),
            None => info,
        };
        let info = if tls.verify_certificate && !tls.check_hostname {
            let mut address = info.addr().clone();
            address.set_danger_accept_invalid_hostnames(true);
            info.set_addr(address)
        } else {
            info
        };
        Client::open(info).map_err(config_error)
    }

    /// Opens a connection, authenticates and selects the db, all within the connect
    /// timeout.
    pub async fn connect(&self, addr: &NodeAddr, role: Role) -> Result<MultiplexedConnection, ClientError> {
        let client = self.client(addr, role)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.command));
        let name = addr.to_string();
        let connecting = async {
            let mut connection = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(
                    |err| match ClientError::from_redis(&name, err, self.timeouts.connect) {
                        ClientError::Io { addr, reason }
                        | ClientError::Server {
                            addr,
                            message: reason,
                        } => ClientError::Connect { addr, reason },
                        other => other,
                    },
                )?;
            if let (Some(client_name), Role::Data) = (&self.client_name, role) {
                ::redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(client_name)
                    .exec_async(&mut connection)
                    .await
                    .map_err(|err| ClientError::from_redis(&name, err, self.timeouts.command))?;
            }
            Ok(connection)
        };
        tokio::time::timeout(self.timeouts.connect, connecting)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: name.clone(),
                timeout: self.timeouts.connect,
            })?
    }
}

type NodeConnections = HashMap<NodeAddr, MultiplexedConnection>;

/// A pool's connections, by calling thread. Connections belong to the process that
/// opened them: after a fork (gunicorn workers of `feast serve`) the child opens its own.
struct Connections {
    pid: u32,
    by_thread: HashMap<ThreadId, NodeConnections>,
}

type SharedConnections = Arc<Mutex<Connections>>;

/// Removes a thread's connections from every pool it used when the thread exits, so a
/// thread per request leaves no connection (nor the runtime its I/O task ran on) behind.
struct ThreadExit {
    thread: ThreadId,
    pools: Vec<Weak<Mutex<Connections>>>,
}

impl Drop for ThreadExit {
    fn drop(&mut self) {
        for pool in self.pools.drain(..).filter_map(|pool| pool.upgrade()) {
            let removed = lock(&pool).by_thread.remove(&self.thread);
            drop(removed);
        }
    }
}

thread_local! {
    static THREAD_EXIT: RefCell<ThreadExit> = RefCell::new(ThreadExit {
        thread: thread::current().id(),
        pools: Vec::new(),
    });
}

fn lock(connections: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    let mut guard = connections.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if guard.pid != pid {
        guard.pid = pid;
        guard.by_thread.clear();
    }
    guard
}

/// One multiplexed connection per node and calling thread: a connection's I/O task
/// runs on the runtime that opened it, which is the calling thread's. A connection
/// that failed is dropped so the next request opens a new one: the client reconnects
/// by itself. A thread's connections are dropped when it exits.
pub struct Pool {
    connector: Connector,
    role: Role,
    connections: SharedConnections,
}

impl Pool {
    pub fn new(connector: Connector, role: Role) -> Self {
        Self {
            connector,
            role,
            connections: Arc::new(Mutex::new(Connections {
                pid: std::process::id(),
                by_thread: HashMap::new(),
            })),
        }
    }

    fn cached(&self, addr: &NodeAddr) -> Option<MultiplexedConnection> {
        lock(&self.connections)
            .by_thread
            .get(&thread::current().id())
            .and_then(|nodes| nodes.get(addr))
            .cloned()
    }

    async fn connection(&self, addr: &NodeAddr) -> Result<MultiplexedConnection, ClientError> {
        if let Some(connection) = self.cached(addr) {
            return Ok(connection);
        }
        let connection = self.connector.connect(addr, self.role).await?;
        let first_of_thread = {
            let mut guard = lock(&self.connections);
            let nodes = guard.by_thread.entry(thread::current().id()).or_default();
            let first = nodes.is_empty();
            nodes.insert(addr.clone(), connection.clone());
            first
        };
        if first_of_thread {
            // A thread whose thread-locals are being destroyed cannot register: its
            // connection serves this call and is not kept.
            let registered = THREAD_EXIT.try_with(|exit| {
                let mut exit = exit.borrow_mut();
                exit.pools.retain(|pool| pool.strong_count() > 0);
                if !exit
                    .pools
                    .iter()
                    .any(|pool| pool.as_ptr() == Arc::as_ptr(&self.connections))
                {
                    exit.pools.push(Arc::downgrade(&self.connections));
                }
            });
            if registered.is_err() {
                self.forget_thread();
            }
        }
        Ok(connection)
    }

    fn forget_thread(&self) {
        lock(&self.connections).by_thread.remove(&thread::current().id());
    }

    pub fn forget(&self, addr: &NodeAddr) {
        if let Some(nodes) = lock(&self.connections).by_thread.get_mut(&thread::current().id()) {
            nodes.remove(addr);
        }
    }

    /// Sends `pipeline` to `addr` and returns one reply per command, server errors
    /// included as `Value::ServerError` for the caller to route or report.
    pub async fn send(&self, addr: &NodeAddr, pipeline: &Pipeline) -> Result<Vec<Value>, ClientError> {
        if pipeline.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection(addr).await?;
        match connection.send_packed_commands(pipeline, 0, pipeline.len()).await {
            Ok(values) => Ok(values),
            Err(err) => {
                let err = ClientError::from_redis(&addr.to_string(), err, self.connector.timeouts.command);
                if err.is_retryable() {
                    self.forget(addr);
                }
                Err(err)
            }
        }
    }
}
