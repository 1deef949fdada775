"""What a run shows: JSON, Markdown and figures (``files``), the Pareto front, the lineage, the gene pool,
studies, TensorBoard and progress bars."""
