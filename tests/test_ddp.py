"""Real processes: two ranks as two processes (Lightning ``ddp_spawn``, gloo, CPU), and a run killed with
SIGKILL mid-epoch and resumed."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from solo_mlvgm.entry.pretrain import build_pretraining

from .conftest import ROOT, TINY, compose_cfg


class RecordBatches(pl.Callback):
    """Writes, per rank and step, the batch's sample indexes, a fingerprint of its images, and the InfoNCE
    loss with and without the other rank's negatives."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        indexes, views, _ = batch
        with torch.no_grad():
            z0 = pl_module.projector(pl_module.backbone(views[0]))
            z1 = pl_module.projector(pl_module.backbone(views[1]))
            local = copy.deepcopy(pl_module.criterion)
            local.gather_distributed = False
            record = {
                "world": trainer.world_size,
                "indexes": indexes.cpu(),
                "fingerprint": views[0].flatten(1).sum(1).cpu(),
                "gathered_loss": float(pl_module.criterion(z0, z1)),
                "local_loss": float(local(z0, z1)),
            }
        torch.save(record, self.out / f"rank{trainer.global_rank}_step{trainer.global_step}.pt")


def test_two_ranks_draw_different_latents_and_share_negatives(tmp_path):
    out = tmp_path / "records"
    out.mkdir()
    cfg = compose_cfg(  # our SimCLR (backend=lightly): the test reads its loss module
        "mlvgm_simclr",
        [*TINY, "accelerator=cpu", "devices=2", "strategy=ddp_spawn", "max_steps=2", "backend=lightly"],
    )
    job = build_pretraining(cfg, tmp_path / "run")
    job.trainer.callbacks.append(RecordBatches(out))
    job.trainer.fit(job.method, datamodule=job.data)

    records = {p.stem: torch.load(p, weights_only=True) for p in sorted(out.glob("*.pt"))}
    assert set(records) == {f"rank{r}_step{s}" for r in (0, 1) for s in (1, 2)}, sorted(records)
    assert all(r["world"] == 2 for r in records.values())
    indexes = torch.cat([r["indexes"] for r in records.values()])
    assert indexes.unique().numel() == indexes.numel()  # no sample drawn twice across ranks and steps
    fingerprints = torch.cat([r["fingerprint"] for r in records.values()])
    assert fingerprints.unique().numel() == fingerprints.numel()  # different images on the two ranks
    for r in records.values():  # twice the negatives: the gathered loss is not the rank-local one
        assert abs(r["gathered_loss"] - r["local_loss"]) > 1e-4, r


RUN = [
    "optimizer.batch_size=32",
    "data.epoch_size=1280",  # 40 steps per epoch
    "max_epochs=3",
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=16",
    "log_every_n_steps=5",
]


def _pretrain(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main_pretrain.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"],
        cwd=run_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal, even when the tests run in the background (a shell starts background
        # jobs with SIGINT ignored, and Python then never turns it into KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path):
    """SIGKILL during the second epoch, resume from the last checkpoint: the same batches are trained, so
    the weights are those of the uninterrupted run, bit for bit."""
    whole = _pretrain(tmp_path / "whole")
    assert whole.wait(timeout=600) == 0, whole.stderr.read() if whole.stderr else ""

    killed_dir = tmp_path / "killed"
    killed = _pretrain(killed_dir)
    checkpoint = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the first epoch's checkpoint: the run is now in its second epoch
    time.sleep(0.3)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert json.loads((killed_dir / "status.json").read_text())["status"] == "running"  # never "finished"
    assert not (killed_dir / "backbone.pt").exists()
    assert (tmp_path / "latest").resolve() == (tmp_path / "whole").resolve()  # latest: finished runs only

    resumed_dir = tmp_path / "resumed"
    resumed = _pretrain(resumed_dir, f"resume_from_checkpoint={checkpoint}")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read() if resumed.stderr else ""
    a = torch.load(tmp_path / "whole" / "backbone.pt", weights_only=True)["state_dict"]
    b = torch.load(resumed_dir / "backbone.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = json.loads((resumed_dir / "pretrain.json").read_text())["steps"]
    assert steps == json.loads((tmp_path / "whole" / "pretrain.json").read_text())["steps"] == 120


def test_a_run_stopped_with_ctrl_c_says_so_and_is_not_latest(tmp_path):
    finished = _pretrain(tmp_path / "finished", "max_epochs=1")
    assert finished.wait(timeout=600) == 0
    run_dir = tmp_path / "stopped"
    run = _pretrain(run_dir, "max_epochs=30")  # long: the signal lands in training even on a loaded machine
    metrics = run_dir / "logs" / "metrics.csv"
    deadline = time.monotonic() + 600
    while not metrics.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # training has started (first metrics logged)
    assert run.poll() is None, "the run ended before it could be stopped"
    run.send_signal(signal.SIGINT)
    run.wait(timeout=120)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted", status
    assert not (run_dir / "backbone.pt").exists()
    assert (tmp_path / "latest").resolve() == (tmp_path / "finished").resolve()
