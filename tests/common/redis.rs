//! A real `redis-server` for the broker tests (Debian `redis-server`; ./test.sh
//! installs it): on a free loopback port, with no persistence, stopped by PID on
//! drop. A 3-shard Redis Cluster is three of them joined by `redis-cli --cluster`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::TIMEOUT;

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    password: Option<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port(), false)
    }

    /// On `port` (a restart keeps the port the nodes know).
    pub fn start_on(port: u16, cluster: bool) -> Redis {
        let dir = std::env::temp_dir().join(format!("halley-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Redis {
            child: None,
            port,
            dir,
            cluster,
            password: None,
        };
        redis.spawn();
        redis
    }

    /// One that requires `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Redis {
        let dir = std::env::temp_dir().join(format!("halley-redis-{}-pw", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir,
            cluster: false,
            password: Some(password.to_string()),
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        if self.cluster {
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server on {} never answered",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `redis-cli -p PORT args...`'s output.
    pub fn cli(&self, args: &[&str]) -> String {
        if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return String::new();
        }
        let mut command = Command::new("redis-cli");
        command.args(["-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills it (by its PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three primaries, no replicas, every slot assigned.
pub struct Cluster {
    pub nodes: Vec<Redis>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<Redis> = (0..3).map(|_| Redis::start_on(free_port(), true)).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + TIMEOUT;
        for node in &nodes {
            while !node.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "cluster never became ok");
                thread::sleep(Duration::from_millis(100));
            }
        }
        Cluster { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }
}
