//! Child processes of a test: upstream services and the proxy, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, repo, wait_for};

/// A real service in Python: `examples/quickstart/upstream.py` (HTTP/1.1, plaintext or
/// HTTPS) or `tests/support/grpc/echo_server.py` (gRPC over h2c).
pub struct Upstream {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    name: String,
    script: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
}

impl Upstream {
    /// Starts a plaintext service named `name` (its `x-served-by`) on `port` (0: any).
    pub fn plain(dir: &Path, name: &str, port: u16) -> Self {
        Self::start(dir, name, port, Vec::new())
    }

    /// Starts the gRPC echo service (h2c) named `name`; needs Python's `grpcio`.
    pub fn grpc(dir: &Path, name: &str) -> Self {
        Self::spawn(
            repo().join("tests/support/grpc/echo_server.py"),
            dir,
            name,
            0,
            Vec::new(),
        )
    }

    /// Starts an HTTPS service that requires client certificates of `client_ca`.
    pub fn mtls(
        dir: &Path,
        name: &str,
        port: u16,
        cert: &Path,
        key: &Path,
        client_ca: &Path,
    ) -> Self {
        let args = vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
            "--client-ca".into(),
            client_ca.display().to_string(),
        ];
        Self::start(dir, name, port, args)
    }

    fn start(dir: &Path, name: &str, port: u16, mut args: Vec<String>) -> Self {
        args.push("--access-log".into());
        Self::spawn(
            repo().join("examples/quickstart/upstream.py"),
            dir,
            name,
            port,
            args,
        )
    }

    fn spawn(script: PathBuf, dir: &Path, name: &str, port: u16, args: Vec<String>) -> Self {
        let port_file = dir.join(format!("{name}.port"));
        let _ = std::fs::remove_file(&port_file);
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("python3")
            .arg(&script)
            .args(["--name", name, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--port-file")
            .arg(&port_file)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {} with python3: {e}", script.display()));
        let mut child = child;
        let port = wait_for("upstream port file", Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("{} exited with {status}:\n{log}", script.display());
            }
            std::fs::read_to_string(&port_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        Self {
            child,
            port,
            log,
            name: name.to_owned(),
            script,
            args,
            dir: dir.to_path_buf(),
        }
    }

    /// Stops the service.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        // The old value is dropped here; its child has already been reaped.
        *self = Self::spawn(
            self.script.clone(),
            &self.dir,
            &self.name,
            self.port,
            self.args.clone(),
        );
    }

    /// Request lines this service received (from its access log), the proxy's health checks
    /// (`GET /healthz`) left out.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .filter(|r| !r.starts_with("GET /healthz "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real `edgeward proxy`.
pub struct Proxy {
    pub child: Child,
    pub admin: u16,
    pub log: PathBuf,
}

impl Proxy {
    /// Starts the proxy on `config` and waits until `/readyz` answers 200.
    pub fn start(config: &Path, admin: u16) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_edgeward"))
            .arg("proxy")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start edgeward proxy");
        let mut proxy = Self { child, admin, log };
        wait_for("proxy readiness", Duration::from_secs(30), || {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("proxy exited with {status}:\n{}", proxy.log_text());
            }
            (proxy.admin_get("/readyz").0 == 200).then_some(())
        });
        proxy
    }

    /// GET on the admin port with curl: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "2", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{}{path}", self.admin))
            .output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// The proxy's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new admin port number, for configs.
    pub fn new_admin_port() -> u16 {
        free_port()
    }
}

impl Proxy {
    /// Stops the proxy with SIGTERM (a graceful stop) and waits for it to exit.
    pub fn terminate(&mut self) {
        self.stop_with("-TERM");
    }

    /// Stops the proxy with SIGINT (Ctrl-C, a fast stop) and waits for it to exit.
    pub fn interrupt(&mut self) {
        self.stop_with("-INT");
    }

    fn stop_with(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
