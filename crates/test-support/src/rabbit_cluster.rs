//! A RabbitMQ cluster of a test's own on this machine: `rabbitmq-server`
//! nodes on free ports, joined into one cluster, that the test kills and
//! restarts. Each node keeps its data, logs and Erlang cookie in a scratch
//! directory removed when the cluster is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts the scripts that run a node as the caller
/// (the `/usr/sbin` wrappers switch to the `rabbitmq` user and its cookie).
const BIN: &str = "/usr/lib/rabbitmq/bin";

pub struct RabbitCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    /// A directory holding `ca.pem`, `server.pem` and `server.key`: the
    /// nodes then listen for AMQP over TLS only.
    tls: Option<PathBuf>,
}

struct Node {
    /// The running `rabbitmq-server`, waited for when killed.
    child: std::sync::Mutex<Option<std::process::Child>>,
    name: String,
    port: u16,
    dist_port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl RabbitCluster {
    /// Starts `n` nodes and joins the others to the first; blocks until the
    /// cluster answers (about ten seconds a node).
    pub fn start(n: usize) -> Self {
        Self::start_with(n, None)
    }

    /// One node that speaks AMQP over TLS only, with the certificates in `tls`.
    pub fn start_tls(tls: &Path) -> Self {
        Self::start_with(1, Some(tls.to_owned()))
    }

    fn start_with(n: usize, tls: Option<PathBuf>) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let dir = std::env::temp_dir().join(format!("hookline-rabbit-{id}"));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        // Every node and every CLI call reads the same cookie from HOME.
        let cookie = dir.join(".erlang.cookie");
        std::fs::write(&cookie, uuid::Uuid::new_v4().simple().to_string()).expect("cookie");
        std::fs::set_permissions(&cookie, std::os::unix::fs::PermissionsExt::from_mode(0o400)).expect("cookie mode");
        let nodes = (1..=n)
            .map(|i| {
                let node_dir = dir.join(format!("n{i}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                Node {
                    child: std::sync::Mutex::new(None),
                    name: format!("hl{id}n{i}@localhost"),
                    port: free_port(),
                    dist_port: free_port(),
                    dir: node_dir,
                }
            })
            .collect();
        let cluster = Self { dir, nodes, tls };
        for i in 0..n {
            cluster.launch(i);
        }
        for i in 0..n {
            cluster.await_startup(i);
        }
        for i in 1..n {
            cluster.ctl(i, &["stop_app"]);
            cluster.ctl(i, &["join_cluster", &cluster.nodes[0].name]);
            cluster.ctl(i, &["start_app"]);
        }
        cluster
    }

    fn launch(&self, i: usize) {
        let node = &self.nodes[i];
        let listeners = match &self.tls {
            None => format!("listeners.tcp.default = {}\n", node.port),
            Some(tls) => format!(
                "listeners.tcp = none\nlisteners.ssl.default = {}\nssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\nssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                node.port,
                tls.join("ca.pem").display(),
                tls.join("server.pem").display(),
                tls.join("server.key").display()
            ),
        };
        std::fs::write(node.dir.join("rabbitmq.conf"), format!("{listeners}loopback_users = none\n"))
            .expect("node config");
        std::fs::write(node.dir.join("enabled_plugins"), "[].\n").expect("plugins file");
        let log = std::fs::File::create(node.dir.join("server.log")).expect("server log");
        let child = Command::new(Path::new(BIN).join("rabbitmq-server"))
            .current_dir(&node.dir)
            .env("ERL_CRASH_DUMP", node.dir.join("erl_crash.dump"))
            .env("HOME", &self.dir)
            .env("RABBITMQ_NODENAME", &node.name)
            .env("RABBITMQ_NODE_PORT", node.port.to_string())
            .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", node.dir.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", node.dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", node.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.dir.join("log"))
            .env("RABBITMQ_PID_FILE", node.dir.join("pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("rabbitmq-server starts (Debian's rabbitmq-server package)");
        *node.child.lock().expect("child lock") = Some(child);
    }

    fn await_startup(&self, i: usize) {
        // `wait` follows the pid file until the node is up (`await_startup`
        // gives up at once while the node is not reachable yet).
        let pid_file = self.nodes[i].dir.join("pid");
        let out = self.ctl_output(i, &["wait", &pid_file.to_string_lossy(), "--timeout", "120"]);
        assert!(out.status.success(), "node {} did not start: {}", self.nodes[i].name, self.server_log(i));
    }

    fn server_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("server.log")).unwrap_or_default()
    }

    fn ctl_output(&self, i: usize, args: &[&str]) -> Output {
        Command::new(Path::new(BIN).join("rabbitmqctl"))
            .current_dir(&self.dir)
            .env("ERL_CRASH_DUMP", self.dir.join("erl_crash.dump"))
            .env("HOME", &self.dir)
            .args(["-n", &self.nodes[i].name])
            .args(args)
            .output()
            .expect("rabbitmqctl runs")
    }

    /// Runs `rabbitmqctl` against node `i`, failing the test when it fails.
    pub fn ctl(&self, i: usize, args: &[&str]) -> String {
        let out = self.ctl_output(i, args);
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?} on {}: {}{}",
            self.nodes[i].name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every node's AMQP URL, comma-separated: what `HOOKLINE_AMQP_URL` takes.
    pub fn urls(&self) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        self.nodes
            .iter()
            .map(|n| format!("{scheme}://guest:guest@127.0.0.1:{}/%2f", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s AMQP port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn pid(&self, i: usize) -> Option<i32> {
        std::fs::read_to_string(self.nodes[i].dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// SIGKILLs node `i`: no goodbye to its clients or its peers.
    pub fn kill(&self, i: usize) {
        let pid = self.pid(i).expect("the node wrote its pid");
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.nodes[i].dir.join("pid"));
        if let Some(mut child) = self.nodes[i].child.lock().expect("child lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data; it rejoins the cluster.
    pub fn restart(&self, i: usize) {
        self.launch(i);
        self.await_startup(i);
    }

    /// The node leading quorum queue `queue`, asked of node `via`.
    pub fn leader_of(&self, queue: &str, via: usize) -> Option<usize> {
        let out = self.ctl(via, &["list_queues", "name", "leader", "--quiet", "--no-table-headers"]);
        out.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(queue)).then(|| cols.next().and_then(|leader| self.index_of(leader))).flatten()
        })
    }

    /// The node holding the client connection named `connection_name`, asked of node `via`.
    pub fn node_of_connection(&self, connection_name: &str, via: usize) -> Option<usize> {
        let out = self.ctl(via, &["list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"]);
        out.lines().filter(|l| l.contains(&format!("\"{connection_name}\""))).find_map(|l| {
            // The pid reads <node@host.N.M.K>.
            let pid = l.split_whitespace().next()?.trim_start_matches('<');
            let at = pid.find('@')?;
            let end = pid[at..].find('.').map(|e| at + e)?;
            self.index_of(&pid[..end])
        })
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.pid(i).is_some() {
                self.kill(i);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
