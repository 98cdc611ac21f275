"""The entry layer: what main_pretrain.py, main_linear.py and main_quantify.py run. Each parses the run's
settings once (``solo_mlvgm.settings``), asks ``solo_mlvgm.backends`` for the backend, and wires the
lower layers together."""
