"""Run tables, the plot style, the routing and GRPO figures, and the notebook runner
(`python -m vgrout.figures`)."""
