"""The Dr.GRPO loop with routing arms: config, rollouts, zones, update, run folder,
evaluation and grids (`python -m vgrout.grpo` trains one run)."""
