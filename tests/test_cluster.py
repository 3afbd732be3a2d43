"""Beyond one machine: checkpoints that survive a kill in the middle of their write, one run over two
"nodes" (two torchrun launches on this machine), and sweeps through submitit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_resume import weights_digest

from litvision.checkpoint_io import PARTIAL_SUFFIX
from litvision.utils import load_checkpoint

# A small LSTM on scikit-learn's digits: 11 steps an epoch, last.ckpt every 4 steps and at epoch ends.
TINY = [
    f"--config={ROOT / 'configs/digits_lstm.yaml'}",
    "--model.backbone.init_args.hidden_size=16",
    "--data.batch_size=128",
    "--trainer.max_epochs=2",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--checkpoint_every_n_steps=4",
]
RUN_DIR = Path("lightning_logs/digits_lstm/version_0")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a litvision subprocess: this source tree first, the tests' helpers importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), **extra}


def litvision(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litvision", *args],
        cwd=cwd,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("uninterrupted")
    done = litvision(cwd, "fit", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    return cwd / RUN_DIR


@pytest.fixture
def temp_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A temp folder on another filesystem than ``tmp_path`` where the machine has one (/dev/shm, a
    tmpfs): there a move into the run directory is a copy, the case that truncates Lightning's saves."""
    shm = Path("/dev/shm")
    other = shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev
    folder = Path(tempfile.mkdtemp(dir=shm if other else tmp_path))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_run_killed_while_writing_last_ckpt_resumes_from_the_previous_one(
    uninterrupted, tmp_path, temp_elsewhere
):
    env = child_env(TMPDIR=str(temp_elsewhere))
    killed = litvision(
        tmp_path, "fit", *TINY, "--trainer.callbacks+=helpers.preempt.KillWhileWritingLast",
        "--trainer.callbacks.step=16", env=env,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoints = tmp_path / RUN_DIR / "checkpoints"
    partial = checkpoints / ("last.ckpt" + PARTIAL_SUFFIX)
    assert 0 < partial.stat().st_size < (checkpoints / "last.ckpt").stat().st_size, "killed inside the write"
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 12, "the previous checkpoint, whole"

    resumed = litvision(tmp_path, "fit", *TINY, "--ckpt_path=last", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert weights_digest(checkpoints / "last.ckpt") == weights_digest(
        uninterrupted / "checkpoints/last.ckpt"
    )
    assert not partial.exists(), "the next save of last.ckpt replaces the cut one"


def test_a_run_in_an_array_task_leaves_the_signals_to_submitit(monkeypatch, in_tmp):
    """Seeing SLURM, Lightning installs a requeue handler of its own (SIGUSR1: save, scontrol requeue).
    The command that an array task runs gives its trainer Lightning's plain environment: no handler, and
    submitit alone acts on the scheduler's signals."""
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    from litvision.cli import LitvisionCLI
    from litvision.launch.slurm import PLAIN_ENVIRONMENT

    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "litvision", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "node1"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    found = {}
    for extra in ([], [PLAIN_ENVIRONMENT]):
        trainer = LitvisionCLI(args=[*TINY, "--trainer.logger=false", *extra], run=False).trainer
        trainer._signal_connector.register_signal_handlers()
        try:
            environment = type(trainer._accelerator_connector.cluster_environment)
            found[bool(extra)] = environment, signal.getsignal(signal.SIGUSR1)
        finally:
            trainer._signal_connector.teardown()
    assert found[False][0] is SLURMEnvironment and callable(found[False][1]), "Lightning would requeue itself"
    assert found[True] == (LightningEnvironment, signal.SIG_DFL)


# --- one run over two "nodes": two torchrun launches on this machine, one CPU process each, gloo -----
NODES = [
    "--trainer.num_nodes=2",
    "--trainer.devices=1",
    "--trainer.accelerator=cpu",
    "--trainer.strategy=ddp",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_two_nodes(cwd: Path, *args: str) -> list[tuple[int, str]]:
    """Run ``litvision ARGS`` as two nodes, as a user types it on each (docs/cluster.md): each node's
    torchrun exit status and output."""
    port = free_port()
    logs = [cwd / f"node{rank}.log" for rank in (0, 1)]
    processes = []
    for rank, log in enumerate(logs):
        with log.open("w") as out:
            command = [
                sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
                "-m", "litvision", *args, *NODES,
            ]  # fmt: skip
            processes.append(subprocess.Popen(command, cwd=cwd, env=child_env(), stdout=out, stderr=out))
    codes = [p.wait(timeout=600) for p in processes]
    return [(code, log.read_text()) for code, log in zip(codes, logs)]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("two_nodes")
    for code, output in on_two_nodes(cwd, "fit", *TINY):
        assert code == 0, output[-3000:]
    return cwd


@pytest.mark.slow
def test_two_node_run_reports_what_one_process_measures(two_nodes):
    run = two_nodes / RUN_DIR
    info = json.loads((run / "run_info.json").read_text())
    assert info["num_devices"] == 2, "one run over both nodes"
    distributed = json.loads((run / "test_results.json").read_text())
    single = litvision(two_nodes, "test", *TINY, f"--ckpt_path={distributed['checkpoint']}")
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((two_nodes / "lightning_logs/digits_lstm/version_1/test_results.json").read_text())
    assert distributed["num_samples"] == alone["num_samples"] == 360, "each test image counted once"
    assert distributed["confusion_matrix"] == alone["confusion_matrix"]
    assert {k: v["acc"] for k, v in distributed["per_class"].items()} == {
        k: v["acc"] for k, v in alone["per_class"].items()
    }


@pytest.mark.slow
def test_two_node_run_killed_on_both_nodes_resumes_exactly(two_nodes, tmp_path):
    # Each node takes half of every batch list: 6 steps an epoch; last.ckpt at step 8 is 2 into epoch 2.
    killed = on_two_nodes(
        tmp_path, "fit", *TINY, "--trainer.callbacks+=helpers.crash.KillAtStep", "--trainer.callbacks.step=10"
    )
    assert all(code != 0 for code, _ in killed) and "SIGKILL" in killed[0][1], killed[0][1][-3000:]
    checkpoints = tmp_path / RUN_DIR / "checkpoints"
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 8, "mid-epoch, 2 steps lost"

    for code, output in on_two_nodes(tmp_path, "fit", *TINY, "--ckpt_path=last"):
        assert code == 0, output[-3000:]
    assert weights_digest(checkpoints / "last.ckpt") == weights_digest(
        two_nodes / RUN_DIR / "checkpoints/last.ckpt"
    )
    results = [json.loads((d / RUN_DIR / "test_results.json").read_text()) for d in (tmp_path, two_nodes)]
    assert results[0]["confusion_matrix"] == results[1]["confusion_matrix"]


# --- sweeps through submitit ---------------------------------------------------------------------------
def write_plan(folder: Path, runs: dict[str, dict]) -> Path:
    """A report plan of digits runs (name -> overrides) and a scale that changes nothing."""
    plan = {"title": "Digits on a cluster", "runs": {
        name: {"config": str(ROOT / "configs/digits_lstm.yaml"), "overrides": overrides}
        for name, overrides in runs.items()
    }}  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "950.yaml").write_text(yaml.safe_dump(plan))
    (folder / "scales").mkdir()
    (folder / "scales" / "asis.yaml").write_text(yaml.safe_dump({"description": "the configs as they are"}))
    return folder


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """srun, sbatch and sacct stand-ins on PATH: sbatch keeps the script it is given and answers with a
    job id, sacct says every job is pending. The submission itself is submitit's."""
    bin_dir, scripts = tmp_path / "bin", tmp_path / "sbatch_scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    fakes = {
        "srun": "exit 0",
        "sbatch": f'cp "$1" {scripts}/$(date +%s%N).sh; echo "Submitted batch job 4242"',
        "sacct": 'echo "JobID|State|NodeList"; for i in 0 1 2; do echo "4242_$i|PENDING|"; done',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


def test_slurm_launcher_submits_one_array_task_per_run_and_returns(fake_slurm, tmp_path, capsys):
    from litvision.reproduce.cli import main

    plans = write_plan(
        tmp_path / "plans", {f"lr-{lr}": {"model.optimizer.init_args.lr": lr} for lr in (1, 2, 3)}
    )
    settings = tmp_path / "slurm.yaml"
    settings.write_text(yaml.safe_dump({"partition": "gpu", "account": "lab", "setup": ["module load cuda"]}))
    args = ["run", "--plans", str(plans), "--scale", "asis", "--runs_dir", str(tmp_path / "runs"),
            "--reports_dir", str(tmp_path / "reports"), "--data_source", "synthetic", "--no_analyses",
            "--launcher", "slurm", "--slurm", str(settings), "--slurm.time", "2:00:00", "--gpus_per_run", "2",
            "--slurm.array_parallelism", "2", "--slurm.sbatch.qos=high"]  # fmt: skip
    main(args)
    out = capsys.readouterr().out
    assert out.count("submitted as job 4242_") == 3
    (script,) = [p.read_text() for p in fake_slurm.iterdir()]
    for line in ["--partition=gpu", "--account=lab", "--time=120", "--gpus-per-node=2", "--array=0-2%2",
                 "--qos=high", "--signal=USR2@120", "--ntasks-per-node=1"]:  # fmt: skip
        assert f"#SBATCH {line}\n" in script, line
    assert "module load cuda\n" in script
    runs = tmp_path / "runs/asis/950"
    assert not any(runs.glob("*/checkpoints")), "nothing trained here: the cluster trains"
    assert (tmp_path / "reports/asis/REPORT.md").is_file(), "the report of what is on disk, written at once"

    main(args)  # the tasks are still pending (sacct): nothing is submitted twice
    assert "submitted as job" not in capsys.readouterr().out
    assert len(list(fake_slurm.iterdir())) == 1


@pytest.mark.parametrize(
    "option, message",
    [
        (["--slurm.time", "2h"], "SLURM time '2h' is invalid: use minutes, or [days-]hours:minutes:seconds"),
        (["--slurm.sbatch", "qos"], "--slurm.sbatch: 'qos' is not a dict"),  # the parser's: status 2
        (["--slurm.array_parallelism", "-1"], "SLURM setting array_parallelism=-1 is invalid"),
    ],
)
def test_bad_slurm_settings_are_one_line_and_submit_nothing(option, message, fake_slurm, tmp_path, capsys):
    from litvision.reproduce.cli import main

    plans = write_plan(tmp_path / "plans", {"a": {}})
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--plans", str(plans), "--scale", "asis", "--runs_dir", str(tmp_path / "runs"),
              "--data_source", "synthetic", "--launcher", "slurm", *option])  # fmt: skip
    assert exit_.value.code in (1, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {message}" in err
    assert not list(fake_slurm.iterdir()) and not (tmp_path / "runs").exists()


def test_a_settings_files_time_limit_reads_as_sbatch_reads_it(tmp_path, capsys):
    """A time limit is a string, as sbatch reads it; unquoted, YAML reads ``4:00:00`` as the number 14400
    (base 60), which would be taken as minutes: refused in one line, naming the value."""
    from litvision.reproduce.cli import build_parser

    parser = build_parser()
    for written, seconds in (("'4:00:00'", 4 * 3600), ("'240'", 240 * 60), ("'1-12'", 36 * 3600),
                             ("'30:00'", 30 * 60)):  # fmt: skip
        (tmp_path / "slurm.yaml").write_text(f"time: {written}\narray_parallelism: 8\n")
        settings = parser.instantiate(
            parser.parse_args(["run", "--slurm", str(tmp_path / "slurm.yaml")])
        ).run.slurm
        assert (settings.timeout_s(), settings.array_parallelism) == (seconds, 8), written
    (tmp_path / "slurm.yaml").write_text("time: 4:00:00\n")
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["run", "--slurm", str(tmp_path / "slurm.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "14400" in err and "slurm.time" in err


@pytest.mark.slow
def test_submitit_local_waits_and_reports_a_failed_task(tmp_path, capsys):
    from litvision.reproduce.cli import main

    plans = write_plan(tmp_path / "plans", {"broken": {"data.init_args.val_size": 5000}})
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--plans", str(plans), "--scale", "asis", "--runs_dir", str(tmp_path / "runs"),
              "--reports_dir", str(tmp_path / "reports"), "--data_source", "synthetic", "--no_analyses",
              "--launcher", "submitit-local", "--slurm.time", "10"])  # fmt: skip
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "1 failed:\nrun 950/broken: " in err and "5000" in err, err
    marker = json.loads((tmp_path / "runs/asis/950/broken/reproduce.json").read_text())
    assert marker["status"] == "failed" and "5000" in marker["reason"]


def signal_task(job, signum: int = signal.SIGUSR2) -> None:
    """Send a submitit task the signal SLURM sends at preemption and before the time limit (the local
    executor's job is the controller process; the task is its child)."""
    pid = job._process.pid
    (task,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(task), signum)


@pytest.mark.slow
def test_sweep_through_submitit_requeues_preempted_and_timed_out_runs_to_the_local_results(
    tmp_path, monkeypatch
):
    """Three runs through submitit's local executor: one runs through, one is preempted, one reaches its
    time limit; the last two are requeued and resume from last.ckpt. All end with the weights and test
    results of the same runs trained by the local runner."""
    from rich.console import Console

    from litvision.data.sources import DataSource
    from litvision.launch.pool import MARKER
    from litvision.launch.slurm import PLAIN_ENVIRONMENT, Launcher, SlurmSettings
    from litvision.reproduce.plan import load_plan, load_scale
    from litvision.reproduce.report import METRICS
    from litvision.reproduce.runner import Reproduction

    monkeypatch.setenv("PYTHONPATH", child_env()["PYTHONPATH"])  # for the runner's and the tasks' processes
    short = {
        "model.backbone.init_args.hidden_size": 16,
        "data.init_args.batch_size": 128,
        "trainer.max_epochs": 2,
        "trainer.deterministic": True,
        "checkpoint_every_n_steps": 4,
    }
    runs = {name: {**short, "model.optimizer.init_args.lr": lr} for name, lr in
            [("uninterrupted", 0.003), ("preempted", 0.01), ("timed-out", 0.03)]}  # fmt: skip
    local_plans = write_plan(tmp_path / "local_plans", runs)
    # The timed-out run's first attempt stalls at step 16 (last.ckpt: step 12), until submitit's signal
    # 260 s into the attempt (a limit of 800 s, the signal 540 s before it). submitit counts a signal
    # before min(0.8 * limit, limit - 10 min) = 200 s as a preemption, a later one as a timeout.
    stall = [{"class_path": "helpers.preempt.StallUntilResumed", "init_args": {"step": 16}}]
    runs["timed-out"] = {**runs["timed-out"], "trainer.callbacks": stall}
    plans = write_plan(tmp_path / "cluster_plans", runs)
    scale = load_scale("asis", plans / "scales")
    launcher = Launcher("submitit-local", SlurmSettings(time="13:20", signal_delay_s=540, gpus_per_run=0))
    launcher.wait = False  # this test signals a task while they run, then waits for them
    runner = Reproduction(
        [load_plan(plans / "950.yaml", set(METRICS))], scale, DataSource("synthetic", scale),
        tmp_path / "cluster", launcher=launcher, console=Console(file=(tmp_path / "cluster.log").open("w")),
    )  # fmt: skip
    runner.run(analyses=False)  # returns once submitted
    tasks = {job_id.split("/")[1]: task for job_id, task in launcher.tasks.items()}
    for _ in range(600):
        if (tmp_path / "cluster/950/preempted/checkpoints/last.ckpt").is_file():
            break
        time.sleep(0.5)
    signal_task(tasks["preempted"])
    for name in ("uninterrupted", "preempted"):
        tasks[name].wait()
    # The same runs by the local runner, while the timed-out run stalls.
    local = subprocess.run(
        [sys.executable, "-m", "litvision", "reproduce", "run", "--plans", str(local_plans),
         "--scale", "asis", "--runs_dir", str(tmp_path / "local"), "--reports_dir", str(tmp_path / "reports"),
         "--data_source", "synthetic", "--no_analyses"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert local.returncode == 0, local.stdout[-3000:]
    tasks["timed-out"].wait()

    for name, task in tasks.items():
        ours, theirs = tmp_path / "cluster/950" / name, tmp_path / "local/asis/950" / name
        log = task.stdout() or ""
        assert task.state == "FINISHED" and task.result() == "finished", log[-3000:]
        marker = json.loads((ours / MARKER).read_text())
        assert marker["status"] == "finished"
        assert PLAIN_ENVIRONMENT in (ours / "reproduce.log").read_text().splitlines()[0], "submitit's signal"
        assert weights_digest(ours / "checkpoints/last.ckpt") == weights_digest(
            theirs / "checkpoints/last.ckpt"
        )
        results = [json.loads((d / "test_results.json").read_text()) for d in (ours, theirs)]
        assert results[0]["confusion_matrix"] == results[1]["confusion_matrix"], name
        if name == "uninterrupted":
            assert marker["attempts"] == 1 and "Caught signal" not in log, log[-3000:]
        else:
            assert marker["attempts"] == 2 and marker["resumed_from_checkpoint"], log[-3000:]
            assert f"this job is {name}." in log and "Requeued job" in log, log[-3000:]
