"""Walkers released with the paper's code and COP-Gen, converted through the restricted unpickler. The tests
write such files themselves, with classes of the same names (module path and class name) as the originals."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.generators import build_generator
from solo_mlvgm.views import ViewSampler, ViewSpec
from solo_mlvgm.views.import_walker import convert_walker, main, read_foreign_walker
from solo_mlvgm.views.walker import load_walker

ROOT = Path(__file__).resolve().parents[1]
TINY_BIGBIGAN = [
    "--arch",
    "ch=4",
    "--arch",
    "shared_dim=8",
    "--arch",
    "resolution=128",
    "--arch",
    "attention_resolution=64",
]


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


@pytest.fixture
def paper_walker_class(monkeypatch):
    """``src.noise_maker.walkers.NonlinearWalker`` as the paper's code pickles it: chunk bounds and an MLP."""
    module = types.ModuleType("src.noise_maker.walkers")

    class NonlinearWalker(nn.Module):
        def __init__(self, g_type: str, start: int, stop: int, dim: int) -> None:
            super().__init__()
            self.g_type, self.start, self.stop, self.z_dim = g_type, start, stop, 120
            self.walker = _mlp(dim, dim)

    NonlinearWalker.__module__, NonlinearWalker.__qualname__ = module.__name__, "NonlinearWalker"
    module.NonlinearWalker = NonlinearWalker
    for name in ("src", "src.noise_maker", "src.noise_maker.walkers"):
        monkeypatch.setitem(sys.modules, name, module)
    return NonlinearWalker


@pytest.fixture
def copgen_navigator_class(monkeypatch):
    """COP-Gen's ``NonlinearWalk``, defined in its training script (``__main__``)."""

    class NonlinearWalk(nn.Module):
        def __init__(self, dim: int) -> None:
            super().__init__()
            self.walker = _mlp(dim, dim)

    NonlinearWalk.__module__ = "__main__"
    NonlinearWalk.__qualname__ = "NonlinearWalk"
    monkeypatch.setattr(sys.modules["__main__"], "NonlinearWalk", NonlinearWalk, raising=False)
    return NonlinearWalk


def _tiny_bigbigan():
    return build_generator("bigbigan", ch=4, shared_dim=8, resolution=128, attention_resolution=64)


def test_the_papers_joint_walker_becomes_ours_on_its_levels(tmp_path, paper_walker_class):
    original = paper_walker_class("bigbigan", 1, 6, 100)  # the paper's "1_6": chunks 1..5 jointly
    torch.save({"nn_walker": original}, tmp_path / "w_COPGen_120000.pth")
    foreign = read_foreign_walker(tmp_path / "w_COPGen_120000.pth")
    assert foreign.chunks == (1, 6) and foreign.dim == foreign.hidden_dim == 100
    generator = _tiny_bigbigan()
    walker, meta = convert_walker(foreign, generator, None, "bigbigan")
    assert meta["level"] == "z1+z2+z3+z4+z5" and meta["indices"] == [1, 2, 3, 4, 5]
    z = torch.randn(8, 100)
    assert torch.allclose(walker(z), original.walker(z))  # the same delta = MLP(z) on the same coordinates
    # a view spec names the ad-hoc group and uses it: only z1..z5 move, z0 stays bit-identical
    from solo_mlvgm.views.walker import save_walker

    save_walker(tmp_path / "walker.pt", walker, meta)
    spec = ViewSpec.from_config(
        {"perturb": {"z1+z2+z3+z4+z5": {"type": "learned", "walker": str(tmp_path / "walker.pt")}}}
    )
    pair = ViewSampler(generator, spec).sample_levels(4, torch.Generator().manual_seed(0))
    assert torch.equal(pair.anchor[0], pair.positive[0])
    moved = pair.positive[1] - pair.anchor[1]
    assert torch.allclose(moved, original.walker(pair.base[:, 20:120])[:, :20], atol=1e-6)


def test_copgens_navigator_in_dataparallel_moves_the_whole_latent(tmp_path, copgen_navigator_class):
    torch.save({"nn_walker": nn.DataParallel(copgen_navigator_class(120))}, tmp_path / "nav.pth")
    foreign = read_foreign_walker(tmp_path / "nav.pth")
    assert foreign.origin == "__main__.NonlinearWalk" and foreign.chunks is None
    _, meta = convert_walker(foreign, _tiny_bigbigan(), None, "bigbigan")
    assert meta["level"] == "all" and meta["indices"] == [0, 1, 2, 3, 4, 5]


def test_the_command_writes_a_walker_that_load_walker_reads(tmp_path, paper_walker_class):
    torch.save({"nn_walker": paper_walker_class("bigbigan", 2, 3, 20)}, tmp_path / "w.pth")
    out = tmp_path / "walker.pt"
    assert main([str(tmp_path / "w.pth"), str(out), "--generator", "bigbigan", *TINY_BIGBIGAN]) == 0
    walker, meta = load_walker(out)
    assert meta["level"] == "z2" and walker.dim == 20
    assert (
        main([str(tmp_path / "w.pth"), str(out), "--generator", "bigbigan", *TINY_BIGBIGAN]) == 2
    )  # no overwrite


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "stylegan2"], "trained on bigbigan, not on stylegan2: pass --generator bigbigan"),
        (["--generator", "bigbigan", *TINY_BIGBIGAN, "--levels", "z1"], "reads 40 coordinates; levels z1"),
        (["--generator", "bigbigan", "--arch", "depth"], "expected key=value"),
    ],
)
def test_a_walker_that_does_not_fit_is_refused_in_one_line(
    tmp_path, paper_walker_class, args, message, capsys
):
    torch.save({"nn_walker": paper_walker_class("bigbigan", 1, 3, 40)}, tmp_path / "w.pth")
    try:
        code = main([str(tmp_path / "w.pth"), str(tmp_path / "out.pt"), *args])
    except SystemExit as exit_:  # argparse's own usage error
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and not (tmp_path / "out.pt").exists()


def test_code_in_a_walker_file_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"nn_walker": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ConfigError, match="refers to (posix|os).system, which a checkpoint may not contain"):
        read_foreign_walker(tmp_path / "evil.pth")
    assert not marker.exists()
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ConfigError, match="is not a torch.save file"):
        read_foreign_walker(tmp_path / "text.pth")


def test_python_dash_m_runs_the_converter(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "solo_mlvgm.views.import_walker",
            str(tmp_path / "missing.pth"),
            str(tmp_path / "o.pt"),
            "--generator",
            "bigbigan",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: no file at '{tmp_path / 'missing.pth'}'"
    ]


def test_the_papers_stylegan2_walker_reads_the_whole_z_and_moves_its_group(tmp_path, paper_walker_class):
    original = paper_walker_class("stylegan", 4, 8, 16)  # its "4_8": the whole z in, w4..w7 swapped
    torch.save({"nn_walker": original}, tmp_path / "w.pth")
    generator = build_generator("stylegan2", z_dim=16, w_dim=16, mapping_layers=2, channel_max=2)
    walker, meta = convert_walker(read_foreign_walker(tmp_path / "w.pth"), generator, None, "stylegan2")
    assert meta["level"] == "ws4_8" and meta["indices"] == [4, 5, 6, 7] and walker.dim == 16
    with pytest.raises(ConfigError, match="trained on stylegan, not on bigbigan: pass --generator stylegan2"):
        convert_walker(read_foreign_walker(tmp_path / "w.pth"), _tiny_bigbigan(), None, "bigbigan")


def test_files_that_only_pretend_to_be_walkers_are_refused_in_one_line(tmp_path, paper_walker_class):
    """Hostile or broken files: a self-containing DataParallel, a tensor larger than its storage, a
    compressed record, malformed layers and chunk bounds; each a ConfigError, quickly, nothing run."""
    looped = nn.DataParallel(nn.Linear(2, 2))
    looped._modules["module"] = looped
    torch.save({"nn_walker": looped}, tmp_path / "loop.pth")
    with pytest.raises(ConfigError, match="nn_walker is a torch.nn.parallel.data_parallel.DataParallel, not"):
        read_foreign_walker(tmp_path / "loop.pth")

    class Expanded:  # 4 bytes of storage claiming 2^27 elements through a stride of 0
        def __reduce__(self):
            return (
                torch._utils._rebuild_tensor_v2,
                (torch.zeros(1)._typed_storage(), 0, (2**27,), (0,), False, {}),
            )

    torch.save({"nn_walker": Expanded()}, tmp_path / "bomb.pth")
    with pytest.raises(ConfigError, match="claims more elements than its storage holds"):
        read_foreign_walker(tmp_path / "bomb.pth")

    import zipfile

    torch.save({"nn_walker": paper_walker_class("bigbigan", 1, 2, 20)}, tmp_path / "w.pth")
    with zipfile.ZipFile(tmp_path / "w.pth") as src, zipfile.ZipFile(tmp_path / "z.pth", "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    with pytest.raises(ConfigError, match="is compressed: torch.save never compresses"):
        read_foreign_walker(tmp_path / "z.pth")

    for change, message in [
        (lambda w: setattr(w, "start", "one"), "chunks start='one', stop=2 are not integers"),
        (lambda w: setattr(w, "g_type", "biggan"), "g_type 'biggan' is none of"),
        (lambda w: w.walker.__setitem__(2, nn.ReLU()), r"MLP is \['Linear', 'ReLU', 'ReLU'\]"),
        (lambda w: setattr(w.walker[0], "weight", nn.Parameter(torch.zeros(20))), "expected a matrix"),
    ]:
        broken = paper_walker_class("bigbigan", 1, 2, 20)
        change(broken)
        torch.save({"nn_walker": broken}, tmp_path / "broken.pth")
        with pytest.raises(ConfigError, match=message) as err:
            read_foreign_walker(tmp_path / "broken.pth")
        assert "\n" not in str(err.value)
