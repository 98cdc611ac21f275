"""Hydra finds solo_mlvgm's config groups (``generator``, ``views``, ``data``) whatever ``--config-path``
is, so that solo-learn's own config files can add ``+generator=toyworld +views=toyworld_multilevel``.

Hydra discovers search-path plugins in the ``hydra_plugins`` namespace package; this one appends the
repository's ``configs/`` folder after the application's own search path (the app's configs win).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class SoloMlvgmSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if CONFIGS.is_dir():
            search_path.append(provider="solo-mlvgm", path=f"file://{CONFIGS}")
