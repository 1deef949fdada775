"""The evolution: operators, the toolbox, the generation loop, the fitness, users' operators (``plugins``),
the gene pool and the state a checkpoint holds (``state``)."""
