//! Servers as child processes: start one, read the address it bound (it was told to bind port 0
//! and prints where it listens), keep its output, signal it, and kill it on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::poll::wait_for;

/// `target/<profile>/examples/<name>`, next to the running test binary's `deps` directory.
/// `cargo test` builds a package's examples before it runs its tests.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "{} is not built", path.display());
    path
}

/// The address in a `listening on http://ADDR` line, wherever the text stands in the line (text
/// logs print it alone; JSON logs carry it inside the message).
pub fn listening_on_http(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
            .collect(),
    )
}

/// A running child process that announced the address it listens on; killed on drop.
///
/// Its standard output is read on a thread from the start: a child that hangs silently fails the
/// test after the start timeout instead of blocking it forever, and a child that keeps printing
/// never blocks on a full pipe. Every line but the announcing one is kept for [`lines`]
/// (start-up warnings included).
///
/// [`lines`]: ChildServer::lines
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    addr: String,
    output: Arc<Mutex<Vec<String>>>,
    /// How many of `output` [`next_line`](ChildServer::next_line) has consumed.
    cursor: Mutex<usize>,
}

impl ChildServer {
    /// Starts `cmd` with its standard output piped (set stderr, arguments and environment on
    /// `cmd` before) and waits up to `timeout` for the first line from which `announce` reads an
    /// address. Panics when the child prints none in time or exits first.
    pub fn spawn(
        mut cmd: Command,
        timeout: Duration,
        announce: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> ChildServer {
        cmd.stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
        let stdout = child.stdout.take().expect("piped stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match (!announced).then(|| announce(&line)).flatten() {
                    Some(addr) => {
                        announced = true;
                        let _ = tx.send(addr);
                    }
                    None => sink.lock().unwrap().push(line),
                }
            }
        });
        let addr = rx.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!("the child announced no address within {timeout:?} (or exited)")
        });
        ChildServer {
            child,
            addr,
            output,
            cursor: Mutex::new(0),
        }
    }

    /// What `announce` read: the address, as printed (`127.0.0.1:41234`), or whatever else the
    /// child announces (a list of ports, say).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child process itself (to wait for it or take its stdin).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for an output line that satisfies `f`, and returns it.
    pub fn wait_for_line(&self, timeout: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(timeout, what, || self.lines().into_iter().find(|l| f(l)))
    }

    /// The next line not returned before that contains `needle`, from `needle` on, within
    /// `timeout` (a test harness may have printed a test's name before it on the same line).
    /// Lines passed over are consumed.
    pub fn next_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let lines = self.output.lock().unwrap();
                let mut cursor = self.cursor.lock().unwrap();
                while *cursor < lines.len() {
                    let line = &lines[*cursor];
                    *cursor += 1;
                    if let Some(at) = line.find(needle) {
                        return line[at..].to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} from the child within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`) and waits up to `timeout` for the exit
    /// status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        send_signal(self.pid(), signal);
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This test binary again, running only the `#[ignore]`d test `test` with `role_env=1` set: the
/// server half of a test that measures a server process of its own (its peak RSS, say). The
/// child's stdin is a pipe the parent holds; the child calls [`exit_when_stdin_closes`] so that it
/// never outlives the parent. Set `stderr` as the test wants it; the rest is
/// [`ChildServer::spawn`].
pub fn spawn_test_child(
    test: &str,
    role_env: &str,
    stderr: Stdio,
    timeout: Duration,
    announce: impl Fn(&str) -> Option<String> + Send + 'static,
) -> ChildServer {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(role_env, "1")
    .stdin(Stdio::piped())
    .stderr(stderr);
    ChildServer::spawn(cmd, timeout, announce)
}

/// In a child of [`spawn_test_child`]: exits the process (status 0) once the parent closes its
/// stdin, or dies.
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
}

/// Sends `signal` (`"TERM"`, `"INT"`, `"KILL"`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let number = match signal {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        other => panic!("unknown signal {other}"),
    };
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, number) };
    assert_eq!(rc, 0, "kill -{signal} {pid} failed");
}

/// A port that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
