"""View comparison: plan, run and report the paper's Tables 2/3 for any generator."""
