"""MI quantification around the ``mi_quant`` method: gamma stop, Monte Carlo, Table 1, plots, recommended views."""
