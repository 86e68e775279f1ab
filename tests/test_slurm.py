"""The workflow on a real (single-node) SLURM cluster, through profiles/slurm and the executor plugin.

A private cluster (tests/slurm_cluster.py: munged, MariaDB, slurmdbd, slurmctld, slurmd
from Debian's packages) runs config/ci.yaml on three tiny samples with ``predict.parts: 3``
through ``--workflow-profile``: profiles/slurm/config.yaml with its placeholders filled by
tests/profiles/slurm/config.yaml.  Everything is checked from ``sacct``: which rules ran as
jobs, with which partition, account, CPUs, memory, time limit and GPUs; the 1 + 3 + 1 jobs
of scatter-gather prediction; and a longer training job stopped twice, once by SLURM's
``--signal=TERM@`` before its time limit and once by ``scancel``, that the retries resubmit
and that resumes from its checkpoint to the model of the same training run uninterrupted
(locally, at the same time), bit for bit.

Skipped, with the reason, where slurm or root is missing; with TILEUNET_REQUIRE_SLURM=1
(.ci/run sets it) a missing cluster fails instead.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from tileunet.config import merge
from slurm_cluster import SlurmCluster, unavailable
from synthetic import write_cell_samples

ROOT = Path(__file__).resolve().parent.parent
SPLITS = {"a": "train", "c": "val", "d": "test"}
# CPU-only rules and the threads each asks for (config/ci.yaml: resources.cpu.threads = 2 for augment)
CPU_RULES = {"ingest_sample": 1, "weights_sample": 1, "augment_set": None, "predict_prepare": 1,
             "predict_gather": 1, "evaluate_test": 1}
GPU_RULES = ("train_model", "train_member", "predict_part")
# The interrupted training: one network, long enough that SLURM's TERM, due up to 30 s after the
# test lowers the time limit (slurmctld checks time limits every 30 s), and then the scancel both
# land mid-run: 2000 iterations (25 s at the 80 it/s of 2 cores, 2026-12-03) lost that race in CI;
# 6000 leave ~45 s to spare on such a machine.  Validations and checkpoints do not change the
# trajectory.  The whole-workflow run keeps config/ci.yaml's few iterations: its members only
# need to run as jobs.
TRAIN = {"iterations": 6000, "val_interval": 1000, "checkpoint_interval": 25, "ensemble": 1}

pytestmark = pytest.mark.workflow


def write_profile(folder, **changes):
    """profiles/slurm with the test overlay (and ``changes``, same shape) merged in; returns the folder."""
    base = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile = merge(merge(base, yaml.safe_load((ROOT / "tests/profiles/slurm/config.yaml").read_text())), changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder, profile


def snakemake_cmd(workdir, table, *args, configfiles=()):
    return [sys.executable, "-m", "snakemake", *map(str, args), "-s", str(ROOT / "Snakefile"), "--directory",
            str(workdir), "--configfile", str(ROOT / "config/ci.yaml"), *map(str, configfiles),
            "--config", f"samples={table}"]


def run(cmd, env, timeout=2700):
    # a guard against a hung workflow, not a timing: on 2 AMD EPYC (AVX2) cores the whole run took
    # 15.5 min when its members trained 6000 iterations (900 s cut it), 6 min since (2026-12-07)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def cluster():
    reason = unavailable()
    if reason:
        if os.environ.get("TILEUNET_REQUIRE_SLURM") == "1":
            pytest.fail(f"TILEUNET_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    # a short path: munge's and MariaDB's unix sockets live here (108-byte limit)
    root = tempfile.mkdtemp(prefix="slurm-")
    with SlurmCluster(root) as c:
        yield c
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm-data")
    write_cell_samples(tmp, SPLITS)
    (tmp / "parts.yaml").write_text(yaml.safe_dump({"predict": {"parts": 3}}))
    (tmp / "long.yaml").write_text(yaml.safe_dump({"train": TRAIN}))
    return tmp


@pytest.fixture(scope="module")
def slurm_run(cluster, samples, tmp_path_factory):
    """The whole workflow as SLURM jobs; returns (workdir, merged profile, sacct rows, seconds)."""
    work = tmp_path_factory.mktemp("slurm-run")
    profile_dir, profile = write_profile(work / "profile")
    t0 = time.monotonic()
    run(snakemake_cmd(work, samples / "samples.tsv", "all", "--workflow-profile", profile_dir,
                      configfiles=[samples / "parts.yaml"]), cluster.env)
    seconds = time.monotonic() - t0
    print(f"\nSLURM workflow run: {seconds:.0f} s")
    return work, profile, jobs_by_rule(cluster.sacct()), seconds


def jobs_by_rule(rows):
    """sacct rows grouped by the rule name the plugin writes into each job's --comment."""
    out = {}
    for row in rows:
        m = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", row["Comment"])
        out.setdefault(m.group(1) if m else row["Comment"], []).append(row)
    return out


def _minutes_of(elapsed):
    """Whole minutes, rounded up, of sacct's [D-]HH:MM:SS."""
    days, _, clock = elapsed.rpartition("-")
    h, m, sec = map(int, clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (sec > 0)


def _seconds(elapsed):
    days, _, clock = elapsed.rpartition("-")
    h, m, sec = map(int, clock.split(":"))
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


def _resumed_at(log):
    """The iteration a training log says it resumed from, or None."""
    m = re.search(r"resumed from \S+ at iteration (\d+)", log.read_text()) if log.exists() else None
    return m and m.group(1)


def minutes(runtime, attempt=1):
    return int(eval(str(runtime), {"attempt": attempt}))  # the profile's "N * attempt" expressions


def hms(mins):
    return f"{mins // 60:02d}:{mins % 60:02d}:00"


def test_every_job_rule_ran_as_a_slurm_job_with_the_profiles_resources(slurm_run, cluster):
    work, profile, jobs, seconds = slurm_run
    ci = yaml.safe_load((ROOT / "config/ci.yaml").read_text())["resources"]
    expected = {"ingest_sample": 3, "weights_sample": 2, "augment_set": 1, "train_member": 2, "train_model": 1,
                "predict_prepare": 1, "predict_part": 3, "predict_gather": 1, "evaluate_test": 1}
    assert {rule: len(rows) for rule, rows in jobs.items()} == expected, _table(jobs)
    for rule, rows in jobs.items():
        for row in rows:
            assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", row
            assert row["Account"] == cluster.account, row
            if rule in GPU_RULES:
                res = profile["set-resources"][rule]
                assert row["Partition"] == res["slurm_partition"] == cluster.gpu_partition, row
                assert int(row["AllocCPUS"]) == res["cpus_per_gpu"] * res["gpu"], row
                assert row["ReqMem"] == f"{res['mem_mb']}M", row
                assert row["Timelimit"] == hms(minutes(res["runtime"])), row
                assert f"gres/gpu:{cluster.gpu_type}=1" in row["AllocTRES"], row
            else:  # default-resources' partition; mem and runtime from config `resources.cpu`
                assert row["Partition"] == profile["default-resources"]["slurm_partition"], row
                assert int(row["AllocCPUS"]) == (CPU_RULES[rule] or ci["cpu"]["threads"]), row
                assert row["ReqMem"] == f"{ci['cpu']['mem_mb']}M", row
                assert row["Timelimit"] == hms(ci["cpu"]["runtime"]), row
                assert "gres/gpu" not in row["AllocTRES"], row
    print(f"\nsacct, one line per job ({seconds:.0f} s in all):\n{_table(jobs)}")


def _table(jobs):
    return "\n".join(f"{r['JobID']:>5} {rule:16} {r['Partition']:4} cpus={r['AllocCPUS']} mem={r['ReqMem']:6} "
                     f"limit={r['Timelimit']} elapsed={r['Elapsed']} {r['State']} tres={r['AllocTRES']}"
                     for rule, rows in sorted(jobs.items()) for r in sorted(rows, key=lambda r: int(r["JobID"])))


def test_scatter_gather_on_slurm_equals_the_one_job_prediction(slurm_run, cluster, samples, tmp_path):
    work, _, jobs, _ = slurm_run
    assert [len(jobs[r]) for r in ("predict_prepare", "predict_part", "predict_gather")] == [1, 3, 1]
    # the same model, predicted by one local job (predict.parts: 1)
    one = tmp_path / "one"
    shutil.copytree(work / "results", one / "results", ignore=shutil.ignore_patterns("predictions", "evaluation"))
    run(snakemake_cmd(one, samples / "samples.tsv", "results/predictions/d.ome.zarr/zarr.json", "--cores", "2",
                      "--allowed-rules", "predict_sample"), cluster.env)
    a = zarr.open_group(work / "results/predictions/d.ome.zarr", mode="r")
    b = zarr.open_group(one / "results/predictions/d.ome.zarr", mode="r")
    arrays = sorted(p for p, _ in a.arrays()) + sorted(f"labels/cells/{p}" for p, _ in a["labels/cells"].arrays())
    assert len(arrays) >= 4
    for path in arrays:
        np.testing.assert_array_equal(a[path][...], b[path][...], err_msg=path)
    assert a.attrs["ome"] == b.attrs["ome"]


def _wait(what, ready, proc, timeout=1200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) before {what} "
                                 "(its output: snakemake.out in the test's tmp_path)")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_interrupted_training_is_resubmitted_and_resumes_to_the_uninterrupted_model(slurm_run, cluster, samples,
                                                                                     tmp_path):
    work, _, _, _ = slurm_run
    before = {r["JobID"] for r in cluster.sacct()}
    # the same inputs, two fresh trainings: everything up to the augmented set is copied with its
    # metadata to a folder for the SLURM job, and to one for the same training uninterrupted
    retry, reference = tmp_path / "retry", tmp_path / "reference"
    for folder in (retry, reference):
        shutil.copytree(work / "results", folder / "results",
                        ignore=shutil.ignore_patterns("model", "train", "predictions", "evaluation", "train.log"))
        shutil.copytree(work / ".snakemake" / "metadata", folder / ".snakemake" / "metadata")
    # The reference trains locally meanwhile, on the CPU the SLURM job leaves free: with one
    # thread, as the test profile gives the job (set-threads), so the two runs compute alike.
    ref_out = tmp_path / "reference.out"
    ref = subprocess.Popen(snakemake_cmd(reference, samples / "samples.tsv", "train", "--cores", "1",
                                         "--allowed-rules", "train_model",
                                         configfiles=[samples / "parts.yaml", samples / "long.yaml"]),
                           env=cluster.env, stdout=ref_out.open("w"), stderr=subprocess.STDOUT, text=True)
    # attempt 1: once it has written a checkpoint, its time limit is lowered (as an admin's
    # `scontrol update` would) to end within profiles/slurm's --signal=TERM@300 window, so
    # SLURM's next time-limit check (every 30 s) sends the TERM; attempt 2 (runtime * 2) gets
    # scancel's TERM after its first new checkpoint; attempt 3 finishes.
    profile_dir, profile = write_profile(tmp_path / "profile")
    runtime = profile["set-resources"]["train_model"]["runtime"]
    log = retry / "results/logs/train.log"
    ckpt = retry / "results/train/checkpoints/last.pt"
    cmd = snakemake_cmd(retry, samples / "samples.tsv", "train", "--workflow-profile", profile_dir,
                        configfiles=[samples / "parts.yaml", samples / "long.yaml"])
    t0 = time.monotonic()
    out = tmp_path / "snakemake.out"  # a file, not a pipe: nobody reads a pipe while the test waits
    proc = subprocess.Popen(cmd, env=cluster.env, stdout=out.open("w"), stderr=subprocess.STDOUT, text=True)
    try:
        def new_jobs():
            # only train_model runs now (sacct records a job's comment when it ends, so running jobs have none)
            return sorted((r for r in cluster.sacct() if r["JobID"] not in before), key=lambda r: int(r["JobID"]))

        def running(i):
            jobs = new_jobs()
            return len(jobs) > i and jobs[i]["State"] == "RUNNING" and jobs[i]

        first = _wait("the first attempt to run", lambda: running(0), proc)
        _wait("its first checkpoint", ckpt.exists, proc)
        elapsed = cluster.sacct("-j", first["JobID"])[0]["Elapsed"]
        limit = _minutes_of(elapsed) + 2  # ends 1-2 minutes from now: inside the TERM@300 window
        subprocess.run(["scontrol", "update", f"JobId={first['JobID']}", f"TimeLimit={limit}"], env=cluster.env,
                       check=True)
        _wait("SIGTERM to stop the first attempt", lambda: new_jobs()[0]["State"] not in ("PENDING", "RUNNING"),
              proc)
        # Snakemake removes a job's log before each attempt, so each attempt's resume is read while it runs
        first_stop = int(_wait("the second attempt to resume", lambda: _resumed_at(log), proc))
        resumed_at = ckpt.stat().st_mtime_ns
        _wait("a checkpoint of the second attempt", lambda: ckpt.stat().st_mtime_ns != resumed_at, proc)
        second = running(1)
        assert second, new_jobs()
        # scancel with TERM to the job's steps, as a user stops a job gracefully. A plain scancel
        # leaves sacct's state "CANCELLED by <uid>", which snakemake-executor-plugin-slurm 2.8.0
        # does not match against "CANCELLED" and so waits for forever (README, "Running on SLURM").
        subprocess.run(["scancel", "--signal=TERM", second["JobID"]], env=cluster.env, check=True)
        proc.wait(timeout=3600)
        ref.wait(timeout=3600)
    finally:
        for p in (proc, ref):
            if p.poll() is None:  # a failed wait above: do not leave a workflow running
                p.terminate()
                p.wait(timeout=60)
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, out.read_text()[-6000:]
    jobs = new_jobs()
    assert {r["Comment"] for r in jobs} == {"rule_train_model"}, jobs
    print(f"\ninterrupted training on SLURM: {seconds:.0f} s\n" + "\n".join(
        f"{r['JobID']:>5} limit={r['Timelimit']} elapsed={r['Elapsed']} {r['State']} exit={r['ExitCode']}"
        for r in jobs))
    assert [r["State"] for r in jobs] == ["FAILED", "FAILED", "COMPLETED"], jobs
    # attempt 1 as lowered; the resubmissions get the profile's "runtime * attempt"
    assert [r["Timelimit"] for r in jobs] == [hms(limit), hms(minutes(runtime, 2)), hms(minutes(runtime, 3))], jobs
    # attempts 1 and 2 left through the checkpointing handler (exit status 1, not killed by the signal),
    # attempt 1 before its limit; attempt 3 resumed from the checkpoint attempt 2 wrote on scancel's SIGTERM
    assert jobs[0]["ExitCode"] == jobs[1]["ExitCode"] == "1:0", jobs
    assert _seconds(jobs[0]["Elapsed"]) < 60 * limit, jobs[0]
    second_stop = int(_resumed_at(log))
    # both stops mid-run (a stop after the last iteration would resume nothing)
    assert 0 < first_stop < second_stop < TRAIN["iterations"], (first_stop, second_stop, jobs)
    assert f"finished at iteration {TRAIN['iterations']}" in log.read_text()
    assert ref.returncode == 0 and not _resumed_at(reference / "results/logs/train.log"), ref_out.read_text()[-6000:]
    import torch
    a = torch.load(reference / "results/model/model.pt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(retry / "results/model/model.pt", map_location="cpu", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert torch.equal(a[name], b[name]), name
