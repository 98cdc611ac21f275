"""solo-learn's own pretrain config files, unchanged, on Continuous Sampling (``data.format=mlvgm``): the
README's command on solo-learn's cifar files, n-crop batches for SimCLR and SwAV, gradient accumulation,
solo-learn's Checkpointer, linear evaluation of such a run. Skipped without solo-learn (and its scripts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip(
    "solo", reason="solo-learn is not installed (install it from its repository to test its config files)"
)

import solo  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from solo_mlvgm.entry.linear_eval import run_linear_eval  # noqa: E402
from solo_mlvgm.entry.pretrain import build_pretraining, run_pretraining  # noqa: E402
from solo_mlvgm.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CIFAR = Path(solo.__file__).resolve().parents[1] / "scripts" / "pretrain" / "cifar"
if not CIFAR.is_dir():
    pytest.skip(
        f"solo-learn's config files are not at {CIFAR} (an install without its scripts)",
        allow_module_level=True,
    )

# the README's command, made small: 8 images a batch, two steps
COMMAND = [
    "data.format=mlvgm",
    "+generator=toyworld",
    "+views=toyworld_multilevel",
    "wandb.enabled=False",
    "accelerator=cpu",
    "devices=1",
    "strategy=auto",
    "precision=32",
    "sync_batchnorm=False",
]
SMALL = [*COMMAND, "optimizer.batch_size=8", "+max_steps=2"]
SMALL_CROPS = {"rrc": {"crop_min_scale": 0.05, "crop_max_scale": 0.14}, "horizontal_flip": {"prob": 0.5}}


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CIFAR), version_base="1.2"):
        return compose(config_name=name, overrides=overrides)


def _main_pretrain(cwd: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "main_pretrain.py"),
            "--config-path",
            str(CIFAR),
            "--config-name",
            name,
            *overrides,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_the_readme_command_trains_solo_learns_simsiam_file(tmp_path):
    done = _main_pretrain(tmp_path, "simsiam.yaml", *SMALL, "+log_every_n_steps=1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "backend: solo (solo-learn" in out and "SimSiam" in out and "backbone: resnet18" in out
    assert "key not read: method_kwargs.temperature (solo-learn's simsiam never reads it)" in out
    assert "key not applicable: data.train_path" in out
    assert "validation: 5000 labelled images from the generator's evaluation stream" in out
    (run,) = (tmp_path / "runs" / "simsiam-cifar10").glob("2*")
    record = OmegaConf.load(run / "config.yaml")
    assert (
        "augmentations" in record.solo_file_keys.honoured
        and "checkpoint.dir" in record.solo_file_keys.honoured
    )
    assert (run / "given_config.yaml").is_file() and (run / "solo_config.yaml").is_file()
    # solo-learn's Checkpointer, honoured: trained_models/<method>/<run folder>/
    assert list((tmp_path / "trained_models" / "simsiam" / run.name).glob("*-ep=0.ckpt"))
    assert "lr-SGD" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]  # the LR monitor
    payload = torch.load(run / "backbone.pt", weights_only=True)
    assert payload["solo_learn"]["cifar_stem"] and payload["backbone"] == "resnet18"
    # solo-learn's own resnet18 with its CIFAR stem (3x3, stride 1: data.dataset=cifar10 keeps its meaning)
    assert payload["state_dict"]["conv1.weight"].shape == (64, 3, 3, 3)
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / ".hydra").exists()  # cwd left clean


def test_a_refused_key_is_one_line_and_writes_nothing(tmp_path):
    done = _main_pretrain(tmp_path, "simsiam.yaml", *SMALL, "+data.fraction=0.5")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: data.fraction: a fraction of an endless stream has no meaning; set the epoch with "
        "+data.epoch_size=<images>"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_solo_file_without_the_mlvgm_format_says_what_to_add(tmp_path):
    done = _main_pretrain(tmp_path, "simclr.yaml", "+generator=toyworld")
    assert done.returncode == 2
    assert "add data.format=mlvgm +generator=<name>" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _with_small_crops(cfg, num_crops: int):
    with open_dict(cfg):
        cfg.augmentations.append({**SMALL_CROPS, "crop_size": 16, "num_crops": num_crops})
    return cfg


@pytest.mark.parametrize(
    ("name", "small", "shapes"),
    [
        ("simclr.yaml", 0, [(8, 3, 32, 32)] * 2),
        ("simclr.yaml", 2, [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 2),
        ("swav.yaml", 4, [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 4),
    ],
)
def test_multi_crop_batches_train_solo_learns_method(tmp_path, monkeypatch, name, small, shapes):
    monkeypatch.chdir(tmp_path)
    cfg = _compose(name, SMALL)
    if small:
        cfg = _with_small_crops(cfg, small)
    job = build_pretraining(cfg, tmp_path / "run")
    _, crops, targets = job.data.render(0, "cpu")
    assert [tuple(c.shape) for c in crops] == shapes and targets.shape == (8,)
    assert job.method.num_large_crops == 2 and job.method.num_small_crops == small
    run_pretraining(cfg, tmp_path / "run2")
    assert (tmp_path / "run2" / "backbone.pt").is_file()


def test_accumulate_grad_batches_scales_the_lr_as_solo_learn_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = build_pretraining(_compose("simclr.yaml", SMALL), tmp_path / "a")
    four = build_pretraining(_compose("simclr.yaml", [*SMALL, "+accumulate_grad_batches=4"]), tmp_path / "b")
    assert four.trainer.accumulate_grad_batches == 4 and one.trainer.accumulate_grad_batches == 1
    assert four.method.lr == pytest.approx(4 * one.method.lr)
    assert one.method.lr == pytest.approx(0.4 * 8 / 256)  # simclr.yaml's lr 0.4, scaled per 256 images


def test_solo_learns_backbone_kwargs_are_honoured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = build_pretraining(
        _compose("simclr.yaml", [*SMALL, "+backbone.kwargs.zero_init_residual=True"]), tmp_path / "r"
    )
    last_bn = job.method.backbone.layer1[0].bn2.weight
    assert torch.count_nonzero(last_bn) == 0  # torchvision's zero_init_residual


def test_a_bad_value_in_a_solo_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="augmentations\\[0\\].color_jitter.prob must be in \\[0, 1\\]"):
        build_pretraining(
            _compose("simclr.yaml", [*SMALL, "augmentations.0.color_jitter.prob=2"]), tmp_path / "r"
        )


def test_linear_evaluation_rebuilds_solo_learns_backbone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    run_pretraining(_compose("simclr.yaml", SMALL), run)
    linear = OmegaConf.create(
        {
            "pretrained": str(run),
            "seed": 0,
            "backend": "lightly",
            "compare_random": True,
            "data": {"source": "generator", "n_train": 64, "n_test": 32, "seed": 0},
            "probe": {"epochs": 2, "lr": 0.01, "batch_size": 32, "weight_decay": 0.0},
        }
    )
    results = run_linear_eval(linear)
    assert 0 <= results["pretrained"]["top1"] <= 100 and "random_backbone" in results


def test_wandb_offline_logs_beside_the_run(tmp_path):
    pytest.importorskip("wandb", reason="wandb is not installed (an optional logger of solo-learn's)")
    done = _main_pretrain(tmp_path, "simclr.yaml", *SMALL, "wandb.enabled=True", "+wandb.offline=True")
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = (tmp_path / "runs" / "simclr-cifar10").glob("2*")
    assert list((run / "wandb").glob("offline-run-*"))


def test_a_bare_assertion_inside_solo_learn_is_shown_by_its_source_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        build_pretraining(_compose("wmse.yaml", SMALL), tmp_path / "r")  # whitening_size 128 > batch 8
    assert str(err.value) == (
        "solo-learn could not build method 'wmse' from this config: "
        "assert self.whitening_size <= self.batch_size failed (in wmse.py)"
    )


def test_deepclusterv2_trains_over_epochs_of_fixed_anchors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = [
        *COMMAND,
        "optimizer.batch_size=8",
        "+data.epoch_size=32",
        "max_epochs=2",
        "method_kwargs.num_prototypes=[5,5]",
    ]
    cfg = _compose("deepclusterv2.yaml", overrides)
    run_pretraining(cfg, tmp_path / "run")  # k-means over the first epoch's memory at the second's start
    job = build_pretraining(cfg, tmp_path / "again")
    assert job.spec.data.repeat_anchors and len(job.data.train_dataloader().dataset) == 32


# The lines a user adds to solo-learn's own main_pretrain.py (README, "solo-learn's own config files"):
# (anchor in solo-learn's script, what replaces it)
SCRIPT_EDITS = [
    (
        "from solo.methods import METHODS\n",
        "from solo.methods import METHODS\nfrom solo_mlvgm.backends.solo_config import mlvgm_datamodule\n",
    ),
    (
        "    # validation dataloader for when it is available\n    if ",
        "    # validation dataloader for when it is available\n"
        '    if cfg.data.format == "mlvgm":  # solo-mlvgm: Continuous Sampling from a generator\n'
        "        datamodule, val_loader = mlvgm_datamodule(cfg), None\n"
        "    elif ",
    ),
    (
        '    # pretrain dataloader\n    if cfg.data.format == "dali":',
        '    # pretrain dataloader\n    if cfg.data.format == "mlvgm":\n        pass\n    elif cfg.data.format == "dali":',
    ),
    (
        '    if cfg.data.format == "dali":\n        trainer.fit(',
        '    if cfg.data.format == "mlvgm":\n        trainer.fit(model, ckpt_path=ckpt_path, datamodule=datamodule)\n'
        '    elif cfg.data.format == "dali":\n        trainer.fit(',
    ),
]


def test_solo_learns_own_script_trains_on_our_datamodule(tmp_path):
    solo_script = CIFAR.parents[2] / "main_pretrain.py"
    if not solo_script.is_file():
        pytest.skip(
            f"solo-learn's main_pretrain.py is not at {solo_script} (its scripts/ without the checkout's top-level scripts)"
        )
    script = solo_script.read_text()
    # Not one of the user's lines: on a CPU, solo-learn's script cannot run as written (parse_cfg takes
    # len(cfg.devices), a list, which Lightning's CPU accelerator refuses); a GPU user needs no such edit.
    cpu_only = (
        "    trainer = Trainer(**trainer_kwargs)",
        '    trainer_kwargs["devices"] = len(cfg.devices)\n    trainer = Trainer(**trainer_kwargs)',
    )
    for anchor, replacement in [*SCRIPT_EDITS, cpu_only]:
        assert script.count(anchor) == 1, anchor  # solo-learn's script still has the place to edit
        script = script.replace(anchor, replacement)
    (tmp_path / "main_pretrain.py").write_text(script)
    done = subprocess.run(
        [
            sys.executable,
            "main_pretrain.py",
            "--config-path",
            str(CIFAR),
            "--config-name",
            "simclr.yaml",
            *[o for o in SMALL if o != "devices=1"],  # solo-learn's script takes len(cfg.devices): a list
            "auto_resume.enabled=False",
            "checkpoint.enabled=False",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        # the repository on the path, as an install puts it (a checkout used from its own folder may not),
        # ahead of whatever the path held (solo-learn itself may be there rather than installed)
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        },
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # two steps of an epoch of 6,250 batches: cifar10's 50,000 images in batches of 8, from our datamodule
    assert "2/6250" in done.stdout


def test_a_val_path_gives_solo_learns_val_acc1_on_a_rendered_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = [
        *COMMAND,
        "optimizer.batch_size=8",
        "+data.epoch_size=16",
        "max_epochs=1",
        "+data.val_size=24",
    ]
    run_pretraining(_compose("simclr.yaml", overrides), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "pretrain.json").read_text())["metrics"]
    assert 0 <= metrics["val_acc1"] <= 100 and "val_loss" in metrics


def test_auto_umap_plots_the_validation_split(tmp_path, monkeypatch):
    for module in ("umap", "seaborn", "pandas", "wandb"):
        pytest.importorskip(module, reason=f"{module} is not installed (solo-learn's AutoUMAP needs it)")
    monkeypatch.chdir(tmp_path)
    overrides = [
        *COMMAND,
        "optimizer.batch_size=8",
        "+data.epoch_size=16",
        "max_epochs=1",
        "+data.val_size=64",
        "+auto_umap.enabled=True",
    ]
    run_pretraining(_compose("simsiam.yaml", overrides), tmp_path / "run")
    assert list((tmp_path / "auto_umap" / "simsiam" / "run").glob("*/*-ep=0.pdf"))  # <run>/<logger version>/


def test_knn_eval_gives_solo_learns_val_knn_acc1_where_its_knn_works(tmp_path, monkeypatch):
    import torchmetrics

    if tuple(int(p) for p in torchmetrics.__version__.split(".")[:2]) >= (0, 12):
        pytest.skip(f"solo-learn's kNN needs torchmetrics < 0.12, found {torchmetrics.__version__}")
    monkeypatch.chdir(tmp_path)
    overrides = [
        *COMMAND,
        "optimizer.batch_size=8",
        "+data.epoch_size=16",
        "max_epochs=1",
        "+data.val_size=32",
        "+knn_eval.enabled=True",
        "+knn_eval.k=5",
    ]
    run_pretraining(_compose("simclr.yaml", overrides), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "pretrain.json").read_text())["metrics"]
    assert 0 <= metrics["val_knn_acc1"] <= metrics["val_knn_acc5"] <= 100
