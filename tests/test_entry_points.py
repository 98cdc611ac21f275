"""main_pretrain.py and main_linear.py as a user runs them (subprocesses), end to end on tiny settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from solo_mlvgm.backends import solo_importable
from solo_mlvgm.methods import build_backbone

from .conftest import ROOT, TINY


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_pretrain_then_linear_evaluation_end_to_end(tmp_path):
    """With the default ``backend: auto``: solo-learn where it is installed, lightly otherwise."""
    backend = "solo" if solo_importable() else "lightly"
    run_dir = tmp_path / "run"
    done = _run(
        "main_pretrain.py", "--config-name", "mlvgm_simsiam", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"backend: {backend}" in done.stdout
    for name in ("config.yaml", "view_grid.png", "backbone.pt", "checkpoints/last.ckpt", "pretrain.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"
    # output to a file (not a terminal): plain progress lines instead of a live bar
    assert "step 3/3" in done.stdout and "s left" in done.stdout
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    # generator views apply: no image-folder note (solo-learn's 3-step run is told of its 1.5-step warm-up)
    assert all("not a whole number" in note for note in notes), notes

    payload = torch.load(run_dir / "backbone.pt", weights_only=True)
    net, _ = build_backbone(payload["backbone"], payload["small_image_stem"])
    net.load_state_dict(payload["state_dict"])
    assert payload["config"]["method"] == "simsiam" and payload["config"]["backend"] == backend
    assert payload["input_size"] == 32  # the toy world's renders, uncropped
    record = json.loads((run_dir / "pretrain.json").read_text())
    assert record["backend"] == backend
    assert record["collapse"]["monitored"] and record["collapse"]["collapsed"] is False
    assert "collapse signal (collapse_std" in done.stdout and "healthy" in done.stdout
    assert record["feature_rank"]["monitored"] and record["feature_rank"]["collapsed"] is False
    assert "feature rank (feature_rank" in done.stdout

    linear = _run(
        "main_linear.py",
        f"pretrained={tmp_path / 'latest'}",
        "data.n_train=300",
        "data.n_test=200",
        "probe.epochs=3",
        "solo_linear.max_epochs=2",
        cwd=tmp_path,
    )
    assert linear.returncode == 0, linear.stderr[-3000:]
    assert "top-1" in linear.stdout and "random init" in linear.stdout
    assert "randomly initialised backbone: 300 train / 200 test images" in linear.stdout  # progress
    results = json.loads((run_dir / "linear.json").read_text())
    assert results["backend"] == backend
    assert 0 <= results["pretrained"]["top1"] <= 100 and results["data"]["n_test"] == 200
    assert results["pretrained"]["top5"] >= results["pretrained"]["top1"]
    assert results["beats_random"] == (results["pretrained"]["top1"] > results["random_backbone"]["top1"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generator.name=nope"], "error: unknown generator 'nope'"),
        (["+views.perturb.wheel.std=1"], "error: unknown level or group 'wheel'"),
        (["views.perturb.pose.std=-0.5"], "error: views.perturb.pose: perturbation std must be >= 0"),
        (["data=image_folder"], "error: data=image_folder needs data.train_path"),
        (
            ["data=image_folder", "data.train_path=/no/such/folder"],
            "error: image folder '/no/such/folder' does not exist",
        ),
        (["data.num_classes=7"], "error: data.num_classes=7 does not match the data's 10 classes"),
        (["collapse_threshold=abc"], "error: collapse_threshold must be in (0, 1)"),
        (["feature_rank_threshold=1"], "error: feature_rank_threshold must be in (0, 1)"),
    ],
)
def test_bad_config_is_one_clear_line_and_exit_2(tmp_path, args, message):
    done = _run("main_pretrain.py", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert not (tmp_path / "run").exists()  # nothing written: hydra's folder is removed again


@pytest.mark.parametrize(
    "run_dir",
    ["mine", "mine/a/b/c", "mine/${hydra:job.name}/x", "out/../new/x", "."],
    ids=["existing", "nested", "interpolated", "dotdot", "working-directory"],
)
def test_a_refused_run_removes_the_folders_hydra_made_and_only_those(tmp_path, run_dir):
    (tmp_path / "mine").mkdir()  # the user's own empty folder
    done = _run("main_pretrain.py", "generator.name=nope", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: unknown generator 'nope'")
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and not any((tmp_path / "mine").iterdir())


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--config-name", "mlvgm_byol", "--cfg", "job"]])
def test_hydra_flags_after_the_overrides_still_work(tmp_path, flags):
    done = _run("main_pretrain.py", "seed=3", *flags, cwd=tmp_path)  # the run-folder callback goes in between
    assert done.returncode == 0, done.stderr
    assert "seed: 3" in done.stdout and not any(tmp_path.iterdir())


def test_a_refused_resume_leaves_the_run_folder_as_it_was(tmp_path):
    run = tmp_path / "prev"
    run.mkdir()
    before = {"status.json": '{"status": "finished"}', "config.yaml": "seed: 5\n"}
    for name, text in before.items():
        (run / name).write_text(text)
    done = _run("main_quantify.py", "--config-name", "mi_quant", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 2 and "made with different settings" in done.stderr
    assert {p.name: p.read_text() for p in run.iterdir()} == before  # status not "running", no .hydra


def test_linear_evaluation_of_a_missing_run_is_one_line(tmp_path):
    done = _run("main_linear.py", f"pretrained={tmp_path / 'nothing'}", cwd=tmp_path)
    assert done.returncode == 2
    expected = f"error: no pretrained backbone at '{tmp_path / 'nothing'}' (expected backbone.pt from main_pretrain.py)"
    assert done.stderr.strip().splitlines() == [expected]


def test_view_grid_script_writes_the_figure(tmp_path):
    done = _run(
        "scripts/view_grid.py",
        f"out={tmp_path / 'grid.png'}",
        "n_anchors=3",
        "generator.resolution=64",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "grid.png").stat().st_size > 0 and "none (std 1)" in done.stdout
    assert not list(tmp_path.glob("*.log"))  # no hydra log files dropped into the working directory


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_a_machine_without_cuda_and_writes_nothing(tmp_path):
    out = tmp_path / "report"
    script = str(ROOT / "scripts" / "gpu_check.sh")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # this python
    r = subprocess.run(["bash", script, str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: no CUDA device visible to torch; this script checks the GPU paths"
    ]
    no_torch = tmp_path / "bin"  # a python that cannot import torch: one line, not a traceback
    no_torch.mkdir()
    (no_torch / "python").write_text("#!/bin/sh\nexit 1\n")
    (no_torch / "python").chmod(0o755)
    r = subprocess.run(
        ["bash", script, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{no_torch}:{os.environ['PATH']}"},
    )
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: '{no_torch / 'python'}' cannot import torch: activate the project's environment first"
    ]
    assert not out.exists()


def test_list_shows_what_exists(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "solo_mlvgm", "list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    sections: dict[str, list[str]] = {}
    title = ""
    for line in done.stdout.splitlines():
        if line.startswith("  "):
            sections[title].append(line.split()[0])
        else:
            title = line.split(" (")[0].rstrip(":")
            sections[title] = []
    for section, entry in [
        ("run configs", "mlvgm_simsiam"),
        ("generators", "stylegan2_cars"),
        ("views", "toyworld_multilevel"),
        ("data sources", "image_folder"),
        ("methods, lightly backend", "byol"),
        ("backbones", "resnet18"),
        ("benchmark sources", "ffcv"),
    ]:
        assert entry in sections[section], (section, entry, sections)
    wrong = subprocess.run([sys.executable, "-m", "solo_mlvgm", "lsit"], capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.strip().startswith("usage: python -m solo_mlvgm list")


def test_view_grid_script_refuses_zero_anchors(tmp_path):
    done = _run("scripts/view_grid.py", f"out={tmp_path / 'grid.png'}", "n_anchors=0", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: n_anchors must be >= 1, got 0"
    ]
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (
            "import a_dependency_not_installed\n",
            "error: the installed solo-learn cannot be imported (ModuleNotFoundError: No module named "
            "'a_dependency_not_installed'); solo_mlvgm needs solo-learn's lightning-2 code (tag 1.0.8 or "
            "later; tested at commit 9187ea3) (or backend=lightly)",
        ),
        (
            "class BaseMethod:\n    pass\n",
            "error: the installed solo-learn predates the lightning.pytorch API; solo_mlvgm needs solo-learn's "
            "lightning-2 code (tag 1.0.8 or later; tested at commit 9187ea3) (or backend=lightly)",
        ),
    ],
)
def test_an_unusable_solo_learn_is_one_line_naming_the_version_needed(tmp_path, base, message):
    """A stand-in package named solo, shaped like an old solo-learn release, first on the path."""
    methods = tmp_path / "old" / "solo" / "methods"
    methods.mkdir(parents=True)
    (methods.parent / "__init__.py").write_text("")
    (methods / "__init__.py").write_text("")
    (methods / "base.py").write_text(base)
    done = subprocess.run(
        [sys.executable, str(ROOT / "main_pretrain.py"), "--config-name", "mlvgm_simsiam", *TINY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # first on the path, ahead of whatever it held (where the dependencies may be rather than installed)
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(tmp_path / "old"), os.environ.get("PYTHONPATH")])
            ),
        },
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "runs").exists()  # no run folder left, nor runs/ itself
