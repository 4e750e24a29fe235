//! A real single-node Slurm cluster (munged, slurmctld and slurmd) for the
//! integration tests, started in a private directory under /tmp on ports of
//! 127.0.0.1 that were free, and stopped when the [`Cluster`] is dropped.
//!
//! The daemons run in the foreground as children of the test process, so
//! their pids are known from the start and they are reaped when stopped; on
//! drop, every process whose environment names this cluster's slurm.conf
//! (slurmstepd and the job scripts it runs) is stopped as well.
//!
//! Without Slurm, [`Cluster::start`] installs it (`apt-get install slurm-wlm
//! munge`) when it runs as root and apt-get is there, else it returns why
//! it cannot; [`start_or_skip`] turns that into a printed skip, or a panic
//! when `EMORL_REQUIRE_SLURM=1`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The programs the cluster needs (slurm-wlm brings the clients).
const PROGRAMS: [&str; 7] = [
    "sbatch",
    "squeue",
    "scontrol",
    "sinfo",
    "slurmctld",
    "slurmd",
    "munged",
];

/// The one node's name and the one partition's.
pub const NODE: &str = "emorl0";
pub const PARTITION: &str = "emorl";

const POLL: Duration = Duration::from_millis(200);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The states of a job that has not finished (squeue's `-t` list).
const LIVE_STATES: &str =
    "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED,REQUEUED,RESIZING,SIGNALING,STAGE_OUT,STOPPED";

/// Job states after which a job never runs again.
const TERMINAL: [&str; 10] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "SPECIAL_EXIT",
];

struct Daemon {
    name: &'static str,
    child: Child,
    pid_file: PathBuf,
}

/// A running single-node Slurm cluster; dropping it stops everything it
/// started (also when the test panics) and removes its directory.
pub struct Cluster {
    /// Removed after the daemons are stopped (Drop::drop runs before the
    /// fields drop).
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<Daemon>,
}

impl Cluster {
    /// Starts munged, slurmctld and slurmd and waits until the node is idle.
    pub fn start() -> Result<Cluster, String> {
        let programs = ensure_installed()?;
        let program = |name: &str| programs.iter().find(|(n, _)| *n == name).unwrap().1.clone();

        // Node line first: `slurmd -C` reads no configuration.
        let node = node_hardware(&program("slurmd"))?;

        // Socket paths are limited to ~108 bytes: keep the directory short.
        let dir = tempfile::Builder::new()
            .prefix("emorl-slurm")
            .tempdir_in("/tmp")
            .map_err(|e| format!("cannot create a directory under /tmp: {e}"))?;
        let root = dir.path().to_path_buf();
        let conf = root.join("slurm.conf");
        let mut cluster = Cluster {
            dir,
            conf: conf.clone(),
            daemons: Vec::new(),
        };
        // From here on an early return drops `cluster`, which stops what
        // was started.

        // munge: a fresh key, readable by its owner only.
        let munge = root.join("munge");
        for d in [root.join("state"), root.join("spool"), munge.clone()] {
            fs::create_dir(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        fs::set_permissions(&munge, fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("chmod {}: {e}", munge.display()))?;
        let key_path = munge.join("munge.key");
        let mut key = [0u8; 128];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&key_path)
            .and_then(|mut f| f.write_all(&key))
            .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
        let socket = munge.join("munge.socket");
        let mut munged = Command::new(program("munged"));
        munged
            .args(["-F", "-f"])
            .arg(opt("--socket=", &socket))
            .arg(opt("--key-file=", &key_path))
            .arg(opt("--pid-file=", &munge.join("munged.pid")))
            .arg(opt("--log-file=", &munge.join("munged.log")))
            .arg(opt("--seed-file=", &munge.join("seed")));
        cluster.spawn("munged", munged, munge.join("munged.pid"))?;
        cluster.wait_for("munged's socket", Duration::from_secs(10), || {
            socket.exists()
        })?;

        // slurm.conf, on two ports that were free a moment ago.
        let (ctld_port, slurmd_port) = free_ports()?;
        let user = user_name();
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let r = root.display();
        let text = format!(
            "\
ClusterName=emorltest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
NodeName={NODE} NodeHostname={hostname} NodeAddr=127.0.0.1 {node} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
",
            socket = socket.display(),
        );
        fs::write(&conf, text).map_err(|e| format!("cannot write {}: {e}", conf.display()))?;

        let mut ctld = Command::new(program("slurmctld"));
        ctld.args(["-D", "-i"]).env("SLURM_CONF", &conf);
        cluster.spawn("slurmctld", ctld, root.join("slurmctld.pid"))?;
        let mut slurmd = Command::new(program("slurmd"));
        slurmd.args(["-D", "-N", NODE]).env("SLURM_CONF", &conf);
        cluster.spawn("slurmd", slurmd, root.join("slurmd.pid"))?;

        let mut last = String::new();
        let waited = cluster.wait_for("the node to be idle", IDLE_TIMEOUT, || {
            if let Ok(o) = cluster_command(&conf, "sinfo")
                .args(["-h", "-o", "%t"])
                .stderr(Stdio::null())
                .output()
            {
                last = String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            last == "idle"
        });
        waited.map_err(|e| format!("{e} (sinfo said {last:?})"))?;
        Ok(cluster)
    }

    /// The cluster's slurm.conf (what `SLURM_CONF` points at).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The cluster's private directory (logs, state, spool, munge).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A Slurm client (`sbatch`, `squeue`, ...) that talks to this cluster.
    pub fn command(&self, program: &str) -> Command {
        cluster_command(&self.conf, program)
    }

    /// The pids of munged, slurmctld and slurmd.
    pub fn daemon_pids(&self) -> Vec<u32> {
        self.daemons.iter().map(|d| d.child.id()).collect()
    }

    /// Waits until job `job_id` (every task of an array job) has finished,
    /// and checks that it completed.
    pub fn wait_job(&self, job_id: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        // squeue first: the job leaves it when every task has finished.
        // Given -j, squeue may also list a job that has just finished, so
        // -t names the states of a live one.
        loop {
            let o = self
                .command("squeue")
                .args(["-h", "-j", job_id, "-o", "%T"])
                .args(["-t", LIVE_STATES])
                .output()
                .map_err(|e| format!("cannot run squeue: {e}"))?;
            let live = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&o.stderr);
            // An unknown id: scontrol below says so.
            if (o.status.success() && live.is_empty()) || err.contains("Invalid job id") {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "job {job_id} still in the queue after {timeout:?} (squeue: {live:?} {:?})\n{}",
                    err.trim(),
                    self.log_tails()
                ));
            }
            sleep(POLL);
        }
        // Then its records (MinJobAge=300 keeps them): the queue may empty a
        // moment before the last record turns terminal.
        loop {
            let o = self
                .command("scontrol")
                .args(["show", "job", job_id])
                .output()
                .map_err(|e| format!("cannot run scontrol: {e}"))?;
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            if !o.status.success() {
                return Err(format!(
                    "scontrol show job {job_id} failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            let records = job_records(&text);
            if records.is_empty() {
                return Err(format!("scontrol knows no job {job_id}:\n{text}"));
            }
            let states: Vec<&str> = records.iter().map(|r| r.get("JobState")).collect();
            if states.iter().all(|s| TERMINAL.contains(s)) {
                if states.iter().all(|s| *s == "COMPLETED") {
                    return Ok(());
                }
                return Err(format!(
                    "job {job_id} did not complete:\n{}",
                    records.iter().map(Record::describe).collect::<String>()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "job {job_id} not finished after {timeout:?}: states {states:?}\n{}",
                    self.log_tails()
                ));
            }
            sleep(POLL);
        }
    }

    /// The last lines of every daemon log, for error messages.
    pub fn log_tails(&self) -> String {
        let root = self.dir.path();
        let mut s = String::new();
        for (name, path) in [
            ("munged", root.join("munge/munged.log")),
            ("slurmctld", root.join("slurmctld.log")),
            ("slurmd", root.join("slurmd.log")),
            ("munged output", root.join("munged.out")),
            ("slurmctld output", root.join("slurmctld.out")),
            ("slurmd output", root.join("slurmd.out")),
        ] {
            let tail = tail(&path, 25);
            if !tail.trim().is_empty() {
                s += &format!("--- {name} ({}):\n{tail}\n", path.display());
            }
        }
        s
    }

    /// Starts a daemon in the foreground, its output into `<name>.out`.
    fn spawn(
        &mut self,
        name: &'static str,
        mut cmd: Command,
        pid_file: PathBuf,
    ) -> Result<(), String> {
        let out_path = self.dir.path().join(format!("{name}.out"));
        let out = fs::File::create(&out_path)
            .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.daemons.push(Daemon {
            name,
            child,
            pid_file,
        });
        Ok(())
    }

    /// Polls `ready` until it holds; fails early when a daemon has exited.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return Ok(());
            }
            let exited = self
                .daemons
                .iter_mut()
                .find_map(|d| Some((d.name, d.child.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                return Err(format!(
                    "{name} exited ({status}) while waiting for {what}\n{}",
                    self.log_tails()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.log_tails()
                ));
            }
            sleep(POLL);
        }
    }

    /// Every pid this cluster is responsible for: the daemons (by child and
    /// by pid file) and the processes whose environment names its conf.
    fn owned_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = Vec::new();
        // slurmd and slurmctld before munged, which they talk to.
        for d in self.daemons.iter().rev() {
            pids.push(d.child.id());
            if let Some(p) = fs::read_to_string(&d.pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                pids.push(p);
            }
        }
        pids.extend(pids_with_env(&format!(
            "SLURM_CONF={}",
            self.conf.display()
        )));
        let me = std::process::id();
        let mut seen = std::collections::HashSet::new();
        pids.retain(|&p| p != me && p > 1 && seen.insert(p));
        pids
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pids = self.owned_pids();
        for &p in &pids {
            signal(p, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            // try_wait reaps the daemons (children); the others are checked
            // in /proc, zombies counting as gone.
            for d in &mut self.daemons {
                let _ = d.child.try_wait();
            }
            if pids.iter().all(|&p| !pid_alive(p)) || Instant::now() >= deadline {
                break;
            }
            sleep(Duration::from_millis(50));
        }
        // Processes started since (a job step mid-launch) and stragglers.
        let mut left = self.owned_pids();
        left.retain(|&p| pid_alive(p));
        for &p in &left {
            signal(p, libc::SIGKILL);
        }
        for d in &mut self.daemons {
            let _ = d.child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while left.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        // `dir` is removed when the fields drop, after this.
    }
}

/// Starts a cluster, or prints `skipped: <reason>` to stderr and returns
/// None; with `EMORL_REQUIRE_SLURM=1` it panics instead of skipping.
pub fn start_or_skip() -> Option<Cluster> {
    match Cluster::start() {
        Ok(c) => Some(c),
        Err(reason) => {
            if std::env::var("EMORL_REQUIRE_SLURM").as_deref() == Ok("1") {
                panic!("EMORL_REQUIRE_SLURM=1 but no Slurm cluster: {reason}");
            }
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn cluster_command(conf: &Path, program: &str) -> Command {
    let mut c = Command::new(find_program(program).unwrap_or_else(|| program.into()));
    c.env("SLURM_CONF", conf);
    c
}

fn opt(name: &str, path: &Path) -> String {
    format!("{name}{}", path.display())
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn user_name() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// An executable called `name` on PATH or in the sbin directories (which a
/// non-login PATH may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

fn missing_programs() -> Vec<&'static str> {
    PROGRAMS
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect()
}

/// The paths of [`PROGRAMS`], installing Slurm and munge with apt-get when
/// some are missing and that is possible.
fn ensure_installed() -> Result<Vec<(&'static str, PathBuf)>, String> {
    let missing = missing_programs();
    if !missing.is_empty() {
        if !is_root() {
            return Err(format!(
                "Slurm is not installed ({} missing) and, not being root, the test cannot install it",
                missing.join(", ")
            ));
        }
        if find_program("apt-get").is_none() {
            return Err(format!(
                "Slurm is not installed ({} missing) and there is no apt-get to install it",
                missing.join(", ")
            ));
        }
        let apt = |args: &[&str]| -> Result<(), String> {
            let o = Command::new(find_program("apt-get").unwrap())
                .args(["-o", "DPkg::Lock::Timeout=300"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run apt-get: {e}"))?;
            if o.status.success() {
                Ok(())
            } else {
                let all = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                Err(format!(
                    "apt-get {} failed ({}):\n{}",
                    args.join(" "),
                    o.status,
                    last_lines(&all, 15)
                ))
            }
        };
        let install = ["install", "-y", "-q", "slurm-wlm", "munge"];
        if let Err(first) = apt(&install) {
            apt(&["update", "-q"])
                .and_then(|()| apt(&install))
                .map_err(|e| format!("cannot install Slurm: {first}\nthen: {e}"))?;
        }
        let missing = missing_programs();
        if !missing.is_empty() {
            return Err(format!(
                "apt-get installed slurm-wlm and munge, yet {} {} missing",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            ));
        }
    }
    Ok(PROGRAMS
        .iter()
        .map(|&p| (p, find_program(p).unwrap()))
        .collect())
}

/// The node's hardware from `slurmd -C`, less its name and uptime:
/// `CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=...`.
fn node_hardware(slurmd: &Path) -> Result<String, String> {
    let o = Command::new(slurmd)
        .arg("-C")
        .env_remove("SLURM_CONF")
        .output()
        .map_err(|e| format!("cannot run slurmd -C: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("NodeName="))
        .ok_or_else(|| {
            format!(
                "slurmd -C printed no node line: {text}{}",
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
    Ok(line
        .split_whitespace()
        .filter(|w| !w.starts_with("NodeName=") && !w.starts_with("UpTime="))
        .collect::<Vec<_>>()
        .join(" "))
}

/// Two distinct ports on 127.0.0.1 that were free when asked.
fn free_ports() -> Result<(u16, u16), String> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(|e| format!("cannot bind a port on 127.0.0.1: {e}"))
    };
    // Both held at once, so they differ.
    let (a, _la) = bind()?;
    let (b, _lb) = bind()?;
    Ok((a, b))
}

/// Pids of processes whose environment holds exactly `entry` (`K=V`).
fn pids_with_env(entry: &str) -> Vec<u32> {
    let Ok(proc) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == entry.as_bytes()))
        })
        .collect()
}

fn tail(path: &Path, n: usize) -> String {
    fs::read(path)
        .map(|b| last_lines(&String::from_utf8_lossy(&b), n))
        .unwrap_or_default()
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One record of `scontrol show job` (an array task, or a job).
struct Record(Vec<(String, String)>);

impl Record {
    fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "  JobId={} ArrayTaskId={} JobState={} Reason={} ExitCode={}\n",
            self.get("JobId"),
            self.get("ArrayTaskId"),
            self.get("JobState"),
            self.get("Reason"),
            self.get("ExitCode"),
        );
        let (out, err) = (self.get("StdOut"), self.get("StdErr"));
        let files = if err == out {
            vec![("StdOut", out)]
        } else {
            vec![("StdOut", out), ("StdErr", err)]
        };
        for (key, path) in files {
            if !path.is_empty() {
                s += &format!("    {key}={path}\n");
                let t = tail(Path::new(path), 10);
                if !t.is_empty() {
                    s += &format!("{t}\n");
                }
            }
        }
        s
    }
}

/// `scontrol show job` output: records split by blank lines, `Key=Value`
/// words (values with spaces are cut at the first, enough for the keys
/// read here).
fn job_records(text: &str) -> Vec<Record> {
    text.split("\n\n")
        .filter(|r| r.contains("JobId="))
        .map(|r| {
            Record(
                r.split_whitespace()
                    .filter_map(|w| w.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        })
        .collect()
}
