"""Few-shot learning: tasks and episodes (``sampling``), training a descendant and scoring it by prototypes
(``training``)."""
