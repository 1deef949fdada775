"""This process's compute settings, in one object: the layout, the training precision, whether threads were set.

They are process-wide on purpose. SCOOP and Ray hand a worker its work as plain function calls
(``evaluate(individual)``), so the set-up a process does once before its first evaluation
(:func:`learngene_ea.fewshot.process.configure_process`, from the run's ``runtime`` section) has no
run object to hang it on; whatever builds a network, a batch or a training step in the process reads it
here. They are written only through :func:`~learngene_ea.core.models.use_channels_last`,
:func:`~learngene_ea.fewshot.training.use_precision` and
:func:`~learngene_ea.fewshot.process.configure_threads`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ProcessSettings:
    """How this process computes.

    Attributes:
        memory_format: the layout of conv weights and image batches (``runtime.channels_last``).
        precision: ``fp32`` or ``bf16``, the training step's forward pass (``runtime.precision``).
        threads_set: the process's torch threads were set by its set-up (the first set-up wins).
    """

    memory_format: torch.memory_format = torch.contiguous_format
    precision: str = "fp32"
    threads_set: bool = False


THIS_PROCESS = ProcessSettings()  # the one instance: every module of this process reads and writes it
