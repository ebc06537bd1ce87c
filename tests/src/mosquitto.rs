//! Debian's Mosquitto as the external broker for end-to-end tests: a private directory,
//! the dynamic security plugin initialised with an admin account for the hub, no
//! persistence of sessions or messages. The dynsec JSON file lives in that directory, so
//! a restart loses every session and queued message but keeps the accounts and roles
//! the hub created. Missing binaries fail the test with the package to install.
//!
//! Self-contained (std, tempfile, rand), so hub/tests includes this same file.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
/// Frames up to MAX_PAYLOAD plus MQTT headers, as docs/protocol.md asks of brokers.
const MAX_PACKET: usize = 1024 * 1024 + 1024;
const HUB_USER: &str = "hub-admin";
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `mosquitto`; killed on drop.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    hub_password: String,
}

/// The dynamic security plugin for this machine's architecture.
fn dynsec_plugin() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("mosquitto_dynamic_security.so"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "mosquitto_dynamic_security.so not found under /usr/lib/*: apt-get install mosquitto"
        )
    })
}

impl Mosquitto {
    /// Initialises dynsec with the hub's admin account and starts the broker on a free
    /// loopback port.
    pub fn start() -> Mosquitto {
        for bin in [MOSQUITTO, MOSQUITTO_CTRL] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} is missing: apt-get install mosquitto mosquitto-clients"
            );
        }
        let dir = tempfile::tempdir().expect("a temp dir for mosquitto");
        let hub_password = format!("{:032x}", rand::random::<u128>());
        let init = Command::new(MOSQUITTO_CTRL)
            .args(["dynsec", "init"])
            .arg(dir.path().join("dynsec.json"))
            .args([HUB_USER, &hub_password])
            .output()
            .expect("running mosquitto_ctrl");
        assert!(
            init.status.success(),
            "mosquitto_ctrl dynsec init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut m = Mosquitto {
            child: None,
            dir,
            port,
            hub_password,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n\
                 user {user}\nmax_packet_size {MAX_PACKET}\npersistence false\n\
                 plugin {plugin}\nplugin_opt_config_file {dynsec}\n\
                 log_dest file {log}\nlog_type all\n",
                port = self.port,
                // As root Mosquitto would switch to the `mosquitto` user, which cannot
                // write the dynsec file in this private directory.
                user = std::env::var("USER").unwrap_or_else(|_| "root".into()),
                plugin = dynsec_plugin().display(),
                dynsec = self.dir.path().join("dynsec.json").display(),
                log = self.dir.path().join("mosquitto.log").display(),
            ),
        )
        .expect("writing mosquitto.conf");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {MOSQUITTO}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} within {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the broker (sessions and queued messages are lost: no persistence) and
    /// starts it again on the same port with the same dynsec file.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The `skiff-hub serve` flags that make the hub use this broker as its dynsec admin.
    pub fn hub_args(&self) -> Vec<String> {
        vec![
            "--broker".into(),
            self.url(),
            "--broker-username".into(),
            HUB_USER.into(),
            "--broker-password".into(),
            self.hub_password.clone(),
        ]
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
