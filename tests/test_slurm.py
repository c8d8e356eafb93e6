"""Run the workflow through Snakemake's SLURM executor on a one-node cluster started here.

The fixture writes a SLURM configuration and a MUNGE key, starts munged, slurmctld and
slurmd on loopback ports, and stops them by process id afterwards. The workflow then runs
the same tiny config twice, with ``--profile profiles/slurm`` and with the local executor,
and both runs must build byte-identical files.

The test needs root (slurmd starts jobs as their owner), the binaries that
``.ci/slurm-install.sh`` installs (Debian's slurm-wlm and munge) and no existing
/etc/slurm/slurm.conf. Otherwise it is skipped. Select it with ``pytest -m slurm``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import manifest_entries

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "profiles" / "slurm"
WORKFLOW_PROFILE = REPO / "profiles" / "default"

COHORT = "tcga_ucec"
# One fold keeps the chain to four rounds of jobs (data, cohort, split, omics) on the two
# CPUs of a small CI machine.
N_FOLDS = 1
# Mirror files (paths in MANIFEST.tsv) that the tiny config fetches: the TCGA-UCEC cohort
# table (90 kB) and the PORPOISE split file of each fold used.
DATA_PATHS = [
    f"tcga_omics/{COHORT}_all_clean.csv.zip",
    *(f"splits/5foldcv/{COHORT}/splits_{fold}.csv" for fold in range(N_FOLDS)),
]

# Files both runs build and the test compares, relative to the working directory. Every
# SLURM job starts Snakemake twice (batch script and job step), so keep the list to jobs
# of a few seconds.
DATA_TARGETS = [f"resources/{path}" for path in DATA_PATHS]
COHORT_TARGETS = [
    f"results/{COHORT}/cohort.tsv",
    f"results/{COHORT}/modalities.json",
    *(f"results/{COHORT}/splits/fold_{fold}.json" for fold in range(N_FOLDS)),
]
OMICS_TARGETS = [
    f"results/{COHORT}/modalities/clinical/fold_{fold}.h5ad" for fold in range(N_FOLDS)
]
# TODO: add block, fusion and slide targets once their jobs take seconds on two CPUs.
# Jobs that the profile gives a GPU get the test node's placeholder GPU
# (PLACEHOLDER_GPU_GRES) and run on the CPU. The profile's cpus_per_gpu of 4 for
# extract_features exceeds a two-CPU node, so slide targets also need
# --set-resources extract_features:gpu=1 extract_features:cpus_per_gpu=2 (the option
# replaces the profile's whole set-resources mapping).
TARGETS = DATA_TARGETS + COHORT_TARGETS + OMICS_TARGETS

SLURM_BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel"]
PARTITION = "mmlego"
# Slurm's compiled-in configuration path on Debian. The job step executor
# (snakemake-executor-plugin-slurm-jobstep 0.6.1) removes SLURM_CONF from the environment
# of the srun it starts inside each job, so that srun only finds a configuration here.
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = SYSTEM_SLURM_CONF.with_name("gres.conf")
# The test node announces one GPU, backed by /dev/null, so that sbatch accepts the
# profile's --gpus=1 requests. Such jobs see CUDA_VISIBLE_DEVICES=0 but no CUDA device.
PLACEHOLDER_GPU_GRES = "Name=gpu File=/dev/null"
CONF_MARKER = "# Written by mmlego tests/test_slurm.py and deleted when the test ends."
DAEMON_START_TIMEOUT_S = 60
JOB_DRAIN_TIMEOUT_S = 30


def free_loopback_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detected_node_config() -> tuple[int, int]:
    """Return (CPUs, RealMemory in MiB) as ``slurmd -C`` detects them on this machine."""
    output = subprocess.run(
        ["slurmd", "-C"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    cpus = re.search(r"\bCPUs=(\d+)", output)
    memory = re.search(r"\bRealMemory=(\d+)", output)
    if cpus is None or memory is None:
        raise RuntimeError(f"slurmd -C printed no CPUs or RealMemory:\n{output}")
    return int(cpus.group(1)), int(memory.group(1))


@dataclass
class SlurmCluster:
    """One-node SLURM cluster on loopback addresses.

    State, spool, logs and the MUNGE key and socket live under ``root``. Only slurm.conf
    and gres.conf go to /etc/slurm (SYSTEM_SLURM_CONF explains why), and ``stop``
    deletes them. ``env`` is the environment for client commands and workflow runs.
    """

    root: Path
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    created_conf_dir: bool = False

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(SYSTEM_SLURM_CONF)}

    def start(self) -> None:
        self._write_munge_key()
        self._write_config()

        # Without --force, munged exits when run as root or with its files under /tmp.
        self._spawn(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.munge_dir / 'munge.key'}",
                f"--pid-file={self.munge_dir / 'munged.pid'}",
                f"--log-file={self.munge_dir / 'munged.log'}",
                f"--seed-file={self.munge_dir / 'munged.seed'}",
            ],
        )
        self._wait_for("the munged socket", self.munge_socket.exists)

        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(SYSTEM_SLURM_CONF)])
        self._wait_for("slurmctld", lambda: "UP" in self._query(["scontrol", "ping"]))

        self._spawn("slurmd", ["slurmd", "-D", "-f", str(SYSTEM_SLURM_CONF), "-N", self.node])
        self._wait_for(
            f"node {self.node} to be idle",
            lambda: self._query(["sinfo", "-h", "-N", "-o", "%t"]).strip() == "idle",
        )

    def stop(self) -> None:
        """Cancel leftover jobs, stop the daemons started here and delete the config files."""
        if self._is_running("slurmctld"):
            subprocess.run(
                ["scancel", f"--partition={PARTITION}"],
                env=self.env,
                capture_output=True,
                timeout=30,
            )
            # Jobs' processes belong to slurmstepd, which outlives slurmd, so wait for
            # cancelled jobs to end before stopping the daemons.
            self._wait_for(
                "cancelled jobs to end",
                lambda: self._query(["squeue", "-h", "-t", "running,completing"]) == "",
                timeout_s=JOB_DRAIN_TIMEOUT_S,
                required=False,
            )
        for name in reversed(list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for path in (SYSTEM_SLURM_CONF, GRES_CONF):
            if path.is_file() and is_test_config(path):
                path.unlink()
        if self.created_conf_dir:
            SYSTEM_SLURM_CONF.parent.rmdir()

    def job_states(self) -> dict[str, str]:
        """Return the state of every job that slurmctld still lists, by job id.

        Finished jobs stay listed for MinJobAge (300 s) after they end.
        """
        output = self._query(["squeue", "-h", "--states=all", "-o", "%i|%T"])
        states = {}
        for line in output.splitlines():
            job_id, state = line.split("|")
            states[job_id] = state
        return states

    def logs(self) -> str:
        """Return the last lines each daemon printed, for failure messages."""
        parts = []
        for name in self.processes:
            path = self.root / f"{name}.out"
            if path.is_file():
                tail = path.read_text(errors="replace").splitlines()[-30:]
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def _write_munge_key(self) -> None:
        self.munge_dir.mkdir(mode=0o700)
        key = self.munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)

    def _write_config(self) -> None:
        for name in ("state", "spool"):
            (self.root / name).mkdir(mode=0o755)
        cpus, detected_memory_mib = detected_node_config()
        # A node configured with more memory than slurmd detects is drained as invalid,
        # so leave headroom.
        node_memory_mib = int(detected_memory_mib * 0.9)
        lines = [
            CONF_MARKER,
            "ClusterName=mmlegotest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_loopback_port()}",
            f"SlurmdPort={free_loopback_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root / 'state'}",
            f"SlurmdSpoolDir={self.root / 'spool'}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            # No slurmdbd, as on sites without job accounting. sacct has nothing to
            # query, so the workflow runs with --slurm-status-command squeue.
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "ReturnToService=2",
            # Seconds squeue keeps listing a finished job. The executor's status checks
            # and job_states() read the final state from there.
            "MinJobAge=300",
            "KillWait=5",
            "InactiveLimit=0",
            "GresTypes=gpu",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} "
            f"RealMemory={node_memory_mib} Gres=gpu:1 State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        if not SYSTEM_SLURM_CONF.parent.is_dir():
            SYSTEM_SLURM_CONF.parent.mkdir(parents=True)
            self.created_conf_dir = True
        SYSTEM_SLURM_CONF.write_text("\n".join(lines) + "\n")
        GRES_CONF.write_text(f"{CONF_MARKER}\n{PLACEHOLDER_GPU_GRES}\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        with open(self.root / f"{name}.out", "wb") as output:
            self.processes[name] = subprocess.Popen(
                command, env=self.env, stdout=output, stderr=subprocess.STDOUT
            )

    def _is_running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def _query(self, command: list[str]) -> str:
        """Return the output of a client command, or "" when it fails."""
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=30)
        return result.stdout if result.returncode == 0 else ""

    def _wait_for(
        self,
        description: str,
        condition,
        timeout_s: float = DAEMON_START_TIMEOUT_S,
        required: bool = True,
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if required:
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with status {process.returncode} while "
                            f"waiting for {description}.\n{self.logs()}"
                        )
            if condition():
                return
            time.sleep(0.5)
        if required:
            raise TimeoutError(
                f"timed out after {timeout_s} s waiting for {description}.\n{self.logs()}"
            )


def is_test_config(path: Path) -> bool:
    """Return whether ``path`` is a configuration that this test wrote."""
    return path.read_text(errors="replace").startswith(CONF_MARKER)


def controller_responds(conf: Path) -> bool:
    """Return whether the slurmctld that ``conf`` names replies to ``scontrol ping``."""
    result = subprocess.run(
        ["scontrol", "ping"],
        env={**os.environ, "SLURM_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode == 0 and "UP" in result.stdout


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    missing = [binary for binary in SLURM_BINARIES if shutil.which(binary) is None]
    if missing:
        pytest.skip(
            f"SLURM binaries not found: {', '.join(missing)}. Install the Debian packages "
            f"slurm-wlm and munge (.ci/slurm-install.sh) to run this test."
        )
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs. Run this test as root.")
    # A configuration that this test wrote and whose controller is gone is left over
    # from an interrupted run and is replaced. Any other one is never touched.
    if SYSTEM_SLURM_CONF.exists():
        if not is_test_config(SYSTEM_SLURM_CONF):
            pytest.skip(
                f"{SYSTEM_SLURM_CONF} already exists. This test does not replace the "
                f"configuration of an installed SLURM cluster."
            )
        if controller_responds(SYSTEM_SLURM_CONF):
            pytest.skip(f"another run of this test is using {SYSTEM_SLURM_CONF}.")

    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def tiny_config(shared_data: Path) -> dict:
    """Return the config of the targets above: one small cohort, clinical data only."""
    files = [entry for entry in manifest_entries(shared_data, "") if entry["path"] in DATA_PATHS]
    listed = sorted(entry["path"] for entry in files)
    assert listed == sorted(DATA_PATHS), f"MANIFEST.tsv in {shared_data} lists only {listed}"
    return {
        "data": {"mirror": str(shared_data), "files": files},
        "cohorts": {
            COHORT: {
                "table": f"resources/tcga_omics/{COHORT}_all_clean.csv.zip",
                "modalities": ["clinical"],
                "splits": {
                    "files": f"resources/splits/5foldcv/{COHORT}/splits_{{fold}}.csv",
                    "n_folds": N_FOLDS,
                },
            }
        },
        "modalities": {
            "clinical": {
                "kind": "table",
                "columns": ["age", "is_female", "oncotree_code"],
                "transform": "clinical",
                "options": {
                    "numeric": ["age"],
                    "binary": ["is_female"],
                    "categorical": ["oncotree_code"],
                },
            }
        },
    }


def submitted_jobs(output: str) -> dict[str, Path]:
    """Return the SLURM log file of every job the executor submitted, by SLURM job id."""
    pattern = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
    return {job_id: Path(log) for job_id, log in pattern.findall(output)}


def finished_step_count(output: str) -> int:
    """Return N from Snakemake's last "N of M steps (100%) done" line."""
    counts = re.findall(r"(\d+) of \d+ steps \(100%\) done", output)
    assert counts, f"no completion line in the Snakemake output:\n{output[-3000:]}"
    return int(counts[-1])


def test_slurm_run_matches_local_run(tmp_path, shared_data, slurm_cluster, workflow_runner):
    config = tiny_config(shared_data)
    # Jobs inherit this environment (sbatch --export=ALL), so they find the same Python.
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_CONF": str(SYSTEM_SLURM_CONF),
    }
    # profiles/default is passed as the workflow profile because Snakemake loads it
    # that way when run from the repository root, on top of profiles/slurm.
    slurm_args = [
        "--profile", str(SLURM_PROFILE),
        "--workflow-profile", str(WORKFLOW_PROFILE),
        "--slurm-no-account",
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs",
    ]  # fmt: skip

    # The local run goes alongside: the SLURM run mostly waits for status checks.
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.monotonic()
        slurm_future = pool.submit(
            workflow_runner,
            tmp_path / "slurm",
            config,
            *TARGETS,
            extra_args=slurm_args,
            env=env,
        )
        local_future = pool.submit(
            workflow_runner,
            tmp_path / "local",
            config,
            *TARGETS,
            extra_args=["--workflow-profile", str(WORKFLOW_PROFILE)],
        )
        slurm_run = slurm_future.result()
        slurm_seconds = time.monotonic() - started
        local_run = local_future.result()
    slurm_output = slurm_run.stdout + slurm_run.stderr
    local_output = local_run.stdout + local_run.stderr
    assert slurm_run.returncode == 0, f"{slurm_output[-5000:]}\n{slurm_cluster.logs()}"
    assert local_run.returncode == 0, local_output[-5000:]

    # Every job went through sbatch: one submission per job of the local run, each with
    # a log that SLURM named after the job id, and each listed as completed.
    jobs = submitted_jobs(slurm_output)
    assert len(jobs) == finished_step_count(local_output), slurm_output[-5000:]
    states = slurm_cluster.job_states()
    for job_id, log in jobs.items():
        assert log.name == f"{job_id}.log"
        assert log.is_file(), f"SLURM log of job {job_id} not found at {log}"
        assert "steps (100%) done" in log.read_text(), f"job {job_id} did not finish: {log}"
        assert states.get(job_id) == "COMPLETED", f"job {job_id}: {states.get(job_id)}"
    # Log directories are named rule_<rule> or group_<group>.
    log_root = tmp_path / "slurm" / ".snakemake" / "slurm_logs"
    submitted_rules = {log.relative_to(log_root).parts[0] for log in jobs.values()}
    assert {"rule_fetch_data", "rule_cohort", "rule_split", "rule_omics"} <= submitted_rules

    for target in TARGETS:
        slurm_file = tmp_path / "slurm" / target
        local_file = tmp_path / "local" / target
        assert slurm_file.read_bytes() == local_file.read_bytes(), f"{target} differs"

    job_ids = ", ".join(sorted(jobs, key=int))
    print(f"SLURM run: {len(jobs)} jobs (SLURM job ids {job_ids}) in {slurm_seconds:.0f} s")
