"""The networks and what is inherited: backbones with gene layers (``models``), the :class:`Learngene`
(``learngene``), DEAP individuals (``individual``), P descendants as one grouped network (``batched``)."""
