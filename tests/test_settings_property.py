"""Property: any value for our scalar settings is either parsed into a spec or refused with one
``ConfigError`` line, never another exception (no traceback reaches a user)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from solo_mlvgm.errors import ConfigError
from solo_mlvgm.settings import LinearSpec, PretrainSpec, QuantifySpec

from .conftest import compose_cfg

VALUES = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
)
PRETRAIN_KEYS = [
    "seed",
    "optimizer.batch_size",
    "max_epochs",
    "max_steps",
    "log_every_n_steps",
    "devices",
    "collapse_threshold",
    "feature_rank_threshold",
    "data.epoch_size",
    "data.crop_size",
    "data.num_classes",
    "data.channels_last",
    "data.autocast",
    "backend",
]
QUANTIFY_KEYS = ["seed", "max_steps", "monte_carlo.samples", "monte_carlo.chunk", "recommend.truncation"]
LINEAR_KEYS = [
    "seed",
    "compare_random",
    "data.n_train",
    "data.seed",
    "probe.epochs",
    "probe.lr",
    "probe.batch_size",
]
BASES = {name: compose_cfg(name) for name in ("mlvgm_simclr", "mi_quant", "linear")}


def _parses_or_refuses_in_one_line(spec_class, base: str, key: str, value: object) -> None:
    cfg = BASES[base].copy()
    OmegaConf.update(cfg, key, value, force_add=True)
    try:
        spec_class.from_config(cfg)
    except ConfigError as err:
        assert str(err) and "\n" not in str(err)


@pytest.mark.parametrize("key", PRETRAIN_KEYS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
@example(value="0\x1f")  # whitespace to str.isspace(), not to int(): once a traceback
def test_pretrain_settings_parse_or_refuse_in_one_line(key, value):
    _parses_or_refuses_in_one_line(PretrainSpec, "mlvgm_simclr", key, value)


@pytest.mark.parametrize("key", QUANTIFY_KEYS)
@settings(max_examples=25, deadline=None)
@given(value=VALUES)
@example(value="0\x1f")  # whitespace to str.isspace(), not to int(): once a traceback
def test_quantify_settings_parse_or_refuse_in_one_line(key, value):
    _parses_or_refuses_in_one_line(QuantifySpec, "mi_quant", key, value)


@pytest.mark.parametrize("key", LINEAR_KEYS)
@settings(max_examples=25, deadline=None)
@given(value=VALUES)
@example(value="0\x1f")  # whitespace to str.isspace(), not to int(): once a traceback
def test_linear_settings_parse_or_refuse_in_one_line(key, value):
    _parses_or_refuses_in_one_line(LinearSpec, "linear", key, value)
