//! The test harness: builds plugin fixtures from `plugins/`, starts the real
//! `gatehouse` binary on 127.0.0.1:0 and talks to it over sockets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The component built from `plugins/<dir>` (e.g. `demo/hello`), built once
/// per test run by the same code that builds source plugins.
pub fn component(dir: &str) -> Vec<u8> {
    type Built = Arc<OnceLock<Vec<u8>>>;
    static BUILT: OnceLock<Mutex<HashMap<String, Built>>> = OnceLock::new();
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(dir.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let source = repo().join("plugins").join(dir);
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let name = dir.rsplit('/').next().unwrap().to_owned();
        // The build is async; run it on a runtime of its own thread, since
        // the calling test already runs inside one.
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(gatehouse::plugin::source::build_rust(
                    &name, &source, &target,
                ))
        })
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("building the fixture {dir}: {e}"))
    })
    .clone()
}

/// A folder for one test: `plugins/` and `data/` inside.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        Site { dir }
    }

    pub fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `plugins/<file>`.
    pub fn put(&self, file: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.plugins().join(file), bytes).unwrap();
    }

    /// Writes `plugins/<name>.wasm` by a rename, as a deploy would.
    pub fn put_by_rename(&self, name: &str, bytes: &[u8]) {
        let tmp = self.plugins().join(format!(".{name}.wasm.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.plugins().join(format!("{name}.wasm"))).unwrap();
    }

    /// Starts gatehouse with `config` as its gatehouse.toml (plugins and data
    /// in this site; listeners and admin as the config says).
    pub fn serve_config(&self, config: &str, env: &[(&str, &str)]) -> Server {
        let file = self.dir.path().join("gatehouse.toml");
        std::fs::write(&file, format!("{config}\n")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        command
            .current_dir(self.dir.path())
            .args(["serve", "--config"])
            .arg(&file)
            .arg("--plugins")
            .arg(self.plugins())
            .arg("--data")
            .arg(self.data());
        Server::spawn(command, env)
    }

    /// Starts gatehouse on this site with extra arguments and environment.
    pub fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        command
            .current_dir(self.dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--plugins",
            ])
            .arg(self.plugins())
            .args(args);
        if !args.contains(&"--data") {
            command.arg("--data").arg(self.data());
        }
        Server::spawn(command, env)
    }
}

/// A running gatehouse process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub admin: String,
    /// Every listener, as `scheme://addr`.
    pub listeners: Vec<String>,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn spawn(mut command: Command, env: &[(&str, &str)]) -> Server {
        command
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting gatehouse");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut server = Server {
            child,
            addr: String::new(),
            admin: String::new(),
            listeners: Vec::new(),
            logs,
        };
        // The admin line comes after every listener's.
        let admin = server.wait_log("admin API on http://", Duration::from_secs(20));
        server.admin = after(&admin, "admin API on http://");
        server.listeners = server
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("listening on "))
            .map(|line| after(line, "listening on "))
            .collect();
        server.addr = server
            .listeners
            .iter()
            .find_map(|url| url.strip_prefix("http://"))
            .unwrap_or_default()
            .to_owned();
        server
    }

    /// The address of the `n`th listener with this scheme, in config order.
    pub fn listener(&self, scheme: &str, n: usize) -> String {
        let prefix = format!("{scheme}://");
        self.listeners
            .iter()
            .filter_map(|url| url.strip_prefix(&prefix))
            .nth(n)
            .unwrap_or_else(|| panic!("no {scheme} listener #{n} in {:?}", self.listeners))
            .to_owned()
    }

    /// `http://<addr><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin><path>`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The JSON the admin API answers at `path`.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let response = client().get(self.admin_url(path)).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line with {needle:?} within {timeout:?}; logs:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The admin API's entry for one plugin.
    pub async fn plugin_status(&self, name: &str) -> Option<serde_json::Value> {
        let list: serde_json::Value = client()
            .get(self.admin_url("/plugins"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list.as_array()?.iter().find(|p| p["name"] == name).cloned()
    }

    /// Waits until `check` holds of the plugin's admin entry.
    pub async fn wait_plugin(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.plugin_status(name).await
                && check(&status)
            {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "plugin {name} did not reach the expected state within {timeout:?}: {:?}\nlogs:\n{}",
                    self.plugin_status(name).await,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a plugin is mounted and serving (a source build included).
    pub async fn wait_serving(&self, name: &str) -> serde_json::Value {
        self.wait_plugin(name, Duration::from_secs(60), |p| p["state"] == "serving")
            .await
    }

    /// Waits until `GET path` answers `status` with a body containing `needle`.
    pub async fn wait_body(&self, path: &str, status: u16, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = client().get(self.url(path)).send().await
                && response.status().as_u16() == status
                && response
                    .text()
                    .await
                    .is_ok_and(|body| body.contains(needle))
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "GET {path} never answered {status} with {needle:?}; logs:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn after(line: &str, marker: &str) -> String {
    let rest = &line[line.find(marker).unwrap() + marker.len()..];
    rest.split_whitespace().next().unwrap().to_owned()
}

/// An HTTP client for the tests (HTTP/1.1, no proxy).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// GET a URL and return the status and body.
pub async fn get(url: &str) -> (u16, String) {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// A TLS client trusting only `roots`, offering `alpn`.
pub fn tls_connector(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Makes sure a command from a Debian package is on the machine, installing
/// the package with apt-get (once per run) when it is missing.
pub fn require_tool(command: &str, package: &str) {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let found = |command: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {command}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if found(command) {
        return;
    }
    eprintln!("installing the Debian package {package} for `{command}`");
    let installed = Command::new("sh")
        .args(["-c", &format!("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed && found(command),
        "this test needs `{command}`: install it with `apt-get install {package}` (as root)"
    );
}

/// Sends `request` as written (it should say `Connection: close`) and
/// returns the whole answer as text.
pub async fn raw(addr: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The config text of a site serving `routes` on 127.0.0.1:0 (admin too).
pub fn config_with(extra: &str) -> String {
    format!("[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{extra}")
}
