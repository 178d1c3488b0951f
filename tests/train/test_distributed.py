"""World size 2 on CPU (DDP over gloo): `lab train` under torchrun and `accelerate launch`.

Each launch is a real two-process job on the tiny random model. Compared with one process on
the same effective batch, the loss curve and the weights agree within float tolerance (the loop
normalizes every step by the loss tokens of the whole effective batch, so the split over
processes does not change the update; only the order of float sums does): losses to a relative
1e-5, weights to an absolute 1e-4 (they move by more than 1e-2; Adam's g/sqrt(v) turns the
float-order noise of near-zero gradients into up to ~3e-5 after 30 steps).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 1e-4


def _free_port() -> int:
    with socket.socket() as s:  # a fresh rendezvous port per launch: a killed job's may linger
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def torchrun(*args) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()),
            "-m", "lab_tools.train", *args]


def accelerate(*launch_args, args=()) -> list[str]:
    return [str(BIN / "accelerate"), "launch", *launch_args, "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "lab_tools.train", *args]


def _run(cmd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _weights(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def _assert_same_weights(a_dir, b_dir):
    import torch

    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    moved = max(float((a[k] - _weights_of_base[k]).abs().max()) for k in a) if _weights_of_base else 1
    assert moved > 100 * WEIGHT_ATOL  # training changed the weights: the comparison means something
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=WEIGHT_ATOL, rtol=0)


_weights_of_base: dict = {}


def _rows(out: Path, phase: str) -> list[dict]:
    return json.loads((out / phase / "run.json").read_text())["rows"]


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    """Data (24 samples a phase: 6 optimizer steps an epoch at effective batch 4), the fast
    preset, and the one-process reference run of KT/1 -> KT/2 (with KT/2 checkpoint selection)."""
    import yaml

    from tests.train.conftest import FAST_PRESET, write_phase_data
    from lab_tools.train.phases import train_phases

    tmp = tmp_path_factory.mktemp("dist")
    data = write_phase_data(tmp / "data", n=24)
    preset = tmp / "fast.yaml"
    preset.write_text(yaml.safe_dump(FAST_PRESET))
    ref = train_phases(data, tiny_model, tmp / "ref", preset=preset, phases=("kt1", "kt2"),
                       progress=False)
    assert ref.manifest["world_size"] == 1
    _weights_of_base.update(_weights(tiny_model))
    args = ["--data", str(data), "--model", str(tiny_model), "--preset", str(preset), "--quiet"]
    return {"tmp": tmp, "data": data, "preset": preset, "ref": tmp / "ref", "args": args}


def test_torchrun_world_2_matches_world_1_with_rank0_selection(setup, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    args = [a for a in setup["args"] if a != "--quiet"]  # the log names the world size
    proc = _run(torchrun(*args, "--out", str(out), "--phases", "kt1,kt2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2 (DistributedType.MULTI_CPU)" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    ref = json.loads((setup["ref"] / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert [manifest["phases"][p]["world_size"] for p in ("kt1", "kt2")] == [2, 2]
    for phase in ("kt1", "kt2"):
        got, want = _rows(out, phase), _rows(setup["ref"], phase)
        assert len(got) == len(want) == {"kt1": 12, "kt2": 18}[phase]  # kt2: + 50% replay
        assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=LOSS_RTOL)
        assert [r["samples"] for r in got] == [r["samples"] for r in want]
        assert all(r["real_token_fraction"] == 1.0 for r in got)  # packed: no filler fed
        assert all(r["world_size"] == 2 for r in got)
    # KT/2 selection ran on rank 0 (MC accuracy over both epochs) while rank 1 waited, and both
    # ranks continued from it: KT/2 started from KT/1's choice on every rank (the loop checks
    # that all ranks agree), and the selection matches the one-process run.
    kt2 = manifest["phases"]["kt2"]
    assert len(kt2["scores"]) == 2 and kt2["selection"].startswith("knowledge score")
    assert Path(kt2["selected"]).name == Path(ref["phases"]["kt2"]["selected"]).name
    # paths are recorded relative to the folder of their record (issue 27: a run folder can move)
    assert json.loads((out / "kt2" / "run.json").read_text())["started_from"] == \
        "../" + manifest["phases"]["kt1"]["selected"]
    _assert_same_weights(out / manifest["selected"], setup["ref"] / ref["selected"])
    # the saved checkpoint is a plain Hugging Face directory
    model = AutoModelForCausalLM.from_pretrained(out / manifest["selected"])
    tok = AutoTokenizer.from_pretrained(out / manifest["selected"])
    ids = tok("Paris is the capital", return_tensors="pt")
    assert model(**ids).logits.isfinite().all()


def test_accelerate_launch_killed_mid_phase_resumes_to_the_same_state(setup, tmp_path):
    out = tmp_path / "out"
    cmd = accelerate("--multi_gpu", args=[*setup["args"], "--out", str(out), "--phases", "kt1"])
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    marker = out / "kt1" / "state" / "progress.json"
    deadline = time.time() + 240
    step = 0
    while proc.poll() is None and time.time() < deadline and step < 3:
        try:
            step = json.loads(marker.read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.01)
    # kill -9 of the launcher and its workers (as a lost node would), mid-KT/1
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    assert step >= 3, (tmp_path / "first.log").read_text()[-3000:]
    assert not (out / "kt1" / "run.json").exists()  # really unfinished
    assert json.loads((out / "manifest.json").read_text())["world_size"] == 2

    proc = _run(accelerate("--multi_gpu", args=[*setup["args"], "--out", str(out),
                                                "--phases", "kt1", "--resume"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _rows(out, "kt1"), _rows(setup["ref"], "kt1")
    assert [r["step"] for r in got] == list(range(1, 13))  # no step lost or counted twice
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=LOSS_RTOL)
    _assert_same_weights(out / "kt1" / "epoch-2", setup["ref"] / "kt1" / "epoch-2")


def test_accelerate_cpu_launcher_starting_one_process_is_refused(setup, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts ONE process (Accelerate's simple
    # launcher; several only through MPI): that one must not pretend to be the asked-for job.
    proc = _run(accelerate("--cpu", args=[*setup["args"], "--out", str(tmp_path / "out")]))
    assert proc.returncode == 1
    assert "started only this one" in proc.stderr and "--multi_gpu" in proc.stderr
    assert "lab_tools/" not in proc.stderr  # a clean error (the traceback is the launcher's own)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_processes_that_would_each_train_alone_are_refused(tmp_path):
    # What Accelerate does without cpu=True under torchrun on a machine without a GPU: it joins
    # the torch process group but reports DistributedType.NO, so each of the 2 processes would
    # train alone. The guard must refuse it, on every rank.
    script = tmp_path / "alone.py"
    script.write_text("import lab_tools.train.launch as launch\n"
                      "launch.on_cpu = lambda: False  # Accelerate's default on this machine\n"
                      "from lab_tools.errors import LabError\n"
                      "try:\n    launch.process_group()\n"
                      "except LabError as e:\n    print('REFUSED', e, flush=True)\n")
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(script)]
    proc = _run(cmd, timeout=120)
    assert proc.stdout.count("REFUSED") == 2 and "world of 1" in proc.stdout, proc.stderr[-2000:]


def test_fsdp_asked_on_cpu_is_refused_not_run_as_ddp(setup, tmp_path):
    # Accelerate has no FSDP on CPU (FullyShardedDataParallelPlugin raises RuntimeError without
    # a GPU or other accelerator device): refused up front with a clean error.
    proc = _run(accelerate("--use_fsdp", args=[*setup["args"], "--out", str(tmp_path / "out")]))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FSDP was asked for" in proc.stderr and "lab_tools/" not in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(_gpus() < 2, reason="FSDP runs only on GPUs in Accelerate (needs 2)")
def test_fsdp_world_2_matches_world_1(setup, tmp_path):
    out = tmp_path / "out"
    proc = _run(accelerate("--use_fsdp", "--fsdp_sharding_strategy", "FULL_SHARD",
                           "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                           "--fsdp_state_dict_type", "FULL_STATE_DICT",
                           args=[*setup["args"], "--out", str(out), "--phases", "kt1"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _rows(out, "kt1"), _rows(setup["ref"], "kt1")
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], rel=1e-3)
