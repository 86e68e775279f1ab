"""A private single-node SLURM cluster for the tests, from Debian's packages, started as root.

Daemons (no systemd): munged, MariaDB (for slurmdbd, so that ``sacct`` reports real
accounting: requested and allocated TRES, time limits, states), slurmdbd, slurmctld and
slurmd, all on loopback ports chosen at start, with every file (configs, state, logs,
sockets) in one folder.  Client commands find the cluster through ``SLURM_CONF``, which
:attr:`SlurmCluster.env` sets; nothing under /etc is changed, so a real cluster's
configuration on the same machine is left alone.

The node declares two GPUs of type ``tiny`` (GRES ``gpu``, backed by character devices
that are /dev/null underneath): SLURM accepts and accounts ``--gpus tiny:1`` requests,
while the jobs themselves run on the CPU (``device: cpu`` in config/ci.yaml).

One thing cannot stay private: snakemake-executor-plugin-slurm-jobstep removes every
``SLURM_*`` variable but the job's identity before its nested ``srun``, ``SLURM_CONF``
included, so ``srun`` inside a job reads the default /etc/slurm/slurm.conf.  The cluster
links that path to its own slurm.conf while it runs, and refuses to start (see
:func:`unavailable`) where a slurm.conf is already there.

Packages: ``apt-get install slurm-wlm slurmdbd munge mariadb-server`` (.ci/run does this).
Usage::

    with SlurmCluster(tempfile.mkdtemp(prefix="slurm-")) as cluster:
        subprocess.run(["sinfo"], env=cluster.env)
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
DAEMONS = ("munged", "mungekey", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sacct", "sacctmgr", "scontrol", "scancel", "sinfo", "srun", "squeue")
INSTALL = "apt-get install slurm-wlm slurmdbd munge mariadb-server (see .ci/run)"
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")  # where srun inside a job looks (see the module docstring)


def _which(name):
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def unavailable():
    """Why a private cluster cannot be started here, or None if it can."""
    missing = [n for n in DAEMONS + CLIENTS if not _which(n)]
    if missing:
        return f"SLURM test cluster needs {', '.join(missing)}: {INSTALL}"
    if os.geteuid() != 0:
        return "the SLURM test cluster starts slurmd, which must run as root (CI runs as root)"
    if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
        return (f"{DEFAULT_CONF} exists (a real cluster's, or one left by a killed test run): the test cluster "
                "links its own config there and will not replace it")
    return None


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class SlurmCluster:
    """Start (``with`` or :meth:`start`) and stop the daemons of a one-node cluster in ``root``.

    Attributes
    ----------
    account, cpu_partition, gpu_partition, gpu_type : str
        What the test profile fills into profiles/slurm's placeholders.
    env : dict
        ``os.environ`` plus ``SLURM_CONF`` and the sbin folders on ``PATH``.
    """

    account = "tileunet-ci"
    cpu_partition = "cpu"
    gpu_partition = "gpu"
    gpu_type = "tiny"
    gpus = 2
    cluster_name = "tileunet"

    def __init__(self, root, timeout=60):
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.node = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count()
        with open("/proc/meminfo") as fh:
            total_mb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1]) // 1024
        self.memory_mb = int(total_mb * 0.8)  # slurmd drains a node that declares more than it has
        self.db_port, self.dbd_port, self.ctld_port, self.slurmd_port = _free_ports(4)
        self.procs = []  # (name, Popen) of the daemons this object started, stopped in reverse
        self.linked = False  # whether DEFAULT_CONF is our link
        path = os.pathsep.join([*SBIN, os.environ.get("PATH", "")])
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf"), "PATH": path}

    # --- configuration -------------------------------------------------------------------

    def _write_configs(self):
        r = self.root
        for d in ("state", "spool", "log", "db"):
            (r / d).mkdir(parents=True, exist_ok=True)
        for i in range(self.gpus):  # GRES gpu needs device files; these are /dev/null (1, 3)
            dev = r / f"gpu{i}"
            if not dev.exists():
                try:
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
                except OSError:  # no mknod here: a plain file still counts (slurmd logs an error)
                    dev.touch()
        munge = r / "munge.socket"
        common = f"AuthType=auth/munge\nAuthInfo=socket={munge}\n"
        (r / "slurmdbd.conf").write_text(
            common + f"DbdHost=localhost\nDbdPort={self.dbd_port}\nSlurmUser=root\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            f"StorageUser=root\nStorageLoc=slurm_acct_db\nLogFile={r}/log/slurmdbd.log\nPidFile={r}/slurmdbd.pid\n")
        os.chmod(r / "slurmdbd.conf", 0o600)  # slurmdbd refuses a readable config (it holds the DB password)
        (r / "slurm.conf").write_text(
            common + f"ClusterName={self.cluster_name}\nSlurmctldHost={self.node}(127.0.0.1)\n"
            f"SlurmctldPort={self.ctld_port}\nSlurmdPort={self.slurmd_port}\nSlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/slurmctld.pid\nSlurmdPidFile={r}/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            # no cgroups in a container or VM without systemd: track processes by parent pid
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\nGresTypes=gpu\n"
            "SchedulerType=sched/backfill\nReturnToService=2\n"
            # sacct reads slurmdbd; AccountingStoragePass is how slurmctld/sacctmgr find the munge socket
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={self.dbd_port}\nAccountingStoragePass={munge}\n"
            f"AccountingStorageTRES=gres/gpu,gres/gpu:{self.gpu_type}\nAccountingStorageEnforce=associations\n"
            # keep sbatch --comment (the plugin writes rule_<name>_wildcards_<...> there) for sacct
            "AccountingStoreFlags=job_comment\n"
            "JobAcctGatherType=jobacct_gather/linux\nJobAcctGatherFrequency=5\n"
            # jobs stay visible to squeue for 5 minutes; KillWait: seconds from SIGTERM to SIGKILL
            "MinJobAge=300\nKillWait=15\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} "
            f"Gres=gpu:{self.gpu_type}:{self.gpus} State=UNKNOWN\n"
            f"PartitionName={self.cpu_partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
            f"PartitionName={self.gpu_partition} Nodes={self.node} MaxTime=INFINITE State=UP\n")
        (r / "gres.conf").write_text(
            f"NodeName={self.node} Name=gpu Type={self.gpu_type} File={r}/gpu[0-{self.gpus - 1}]\n")

    # --- daemons -------------------------------------------------------------------------

    def _run(self, *cmd, check=True, timeout=None):
        return subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout or self.timeout)

    def _daemon(self, name, *cmd):
        log = open(self.root / "log" / f"{name}.out", "ab")
        proc = subprocess.Popen([_which(cmd[0]), *cmd[1:]], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def _wait(self, what, ready):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}) while waiting for {what}; "
                                       f"see {self.root / 'log'}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready after {self.timeout} s; see {self.root / 'log'}:\n{self.logs()}")

    def _ok(self, *cmd):
        try:
            return self._run(*cmd, check=False, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self):
        """Configure and start every daemon; returns when the node accepts jobs."""
        r = self.root
        self._write_configs()
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(r / "slurm.conf")
        self.linked = True
        self._run("mungekey", "--create", f"--keyfile={r}/munge.key", "--force")
        self._daemon("munged", "munged", "--foreground", "--force", f"--socket={r}/munge.socket",
                     f"--key-file={r}/munge.key", f"--pid-file={r}/munged.pid", f"--log-file={r}/log/munged.log",
                     f"--seed-file={r}/munged.seed")
        self._wait("munged", lambda: (r / "munge.socket").exists())
        self._run("mariadb-install-db", "--no-defaults", f"--datadir={r}/db", "--user=root",
                  "--auth-root-authentication-method=normal", "--skip-test-db", timeout=120)
        self._daemon("mariadbd", "mariadbd", "--no-defaults", f"--datadir={r}/db", "--user=root",
                     "--bind-address=127.0.0.1", f"--port={self.db_port}", f"--socket={r}/db.socket",
                     f"--pid-file={r}/db.pid", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
                     "--innodb-lock-wait-timeout=900")
        self._wait("mariadbd", lambda: (r / "db.socket").exists())
        self._daemon("slurmdbd", "slurmdbd", "-D")
        self._wait("slurmdbd", lambda: self._ok("sacctmgr", "-n", "list", "cluster"))
        for cmd in (("add", "cluster", self.cluster_name), ("add", "account", self.account, "Description=tests",
                    "Organization=tileunet"), ("add", "user", "root", f"account={self.account}")):
            self._run("sacctmgr", "-i", *cmd)
        self._daemon("slurmctld", "slurmctld", "-D", "-i")
        self._wait("slurmctld", lambda: self._ok("scontrol", "ping"))
        self._daemon("slurmd", "slurmd", "-D", "-N", self.node)
        self._wait("the node", lambda: "idle" in self._run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout)
        return self

    def logs(self, tail=15):
        """The last lines of every daemon log (for failure messages)."""
        out = []
        for log in sorted((self.root / "log").glob("*")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self):
        """Cancel every job, then stop the daemons this object started (newest first)."""
        if any(name == "slurmctld" for name, _ in self.procs):
            self._ok("scancel", "--user=root")
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if self.linked and DEFAULT_CONF.is_symlink() and DEFAULT_CONF.resolve() == (self.root / "slurm.conf"):
            DEFAULT_CONF.unlink()
        self.linked = False

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # --- queries -------------------------------------------------------------------------

    def sacct(self, *args, fields=("JobID", "JobName", "State", "ExitCode", "Partition", "Account", "AllocCPUS",
                                   "ReqMem", "Timelimit", "Elapsed", "AllocTRES", "Comment")):
        """``sacct`` rows (allocations only, ``-X``) as dicts of ``fields``, for all jobs since the cluster started."""
        out = self._run("sacct", "-X", "-P", "-n", "-a", "-S", "2000-01-01", "--format=" + ",".join(fields),
                        *args).stdout
        return [dict(zip(fields, ln.split("|"))) for ln in out.splitlines() if ln.strip()]
