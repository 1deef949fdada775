"""``runtime.deterministic`` and ``runtime.tf32``: what each process sets for its CUDA kernels (the
flags are torch's process-wide settings, so they are checked here without a GPU)."""
import os

import pytest
import torch

from learngene_ea.config.loading import load_config
from learngene_ea.fewshot.process import configure_numerics


@pytest.fixture
def restored_flags(monkeypatch):
    """torch's flags and CUBLAS_WORKSPACE_CONFIG as they were before the test."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.utils.deterministic.fill_uninitialized_memory)
    yield
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, enabled, warn_only,
     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
     torch.utils.deterministic.fill_uninitialized_memory) = saved
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def runtime(*overrides):
    return load_config(None, list(overrides)).runtime


def test_by_default_cuda_kernels_are_deterministic_and_not_tf32(restored_flags):
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    configure_numerics(runtime())
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_a_workspace_setting_of_the_users_own_is_kept(restored_flags, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_numerics(runtime())
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_false_and_tf32_true_free_the_kernels(restored_flags):
    configure_numerics(runtime())
    configure_numerics(runtime("runtime.deterministic=false", "runtime.tf32=true"))
    assert not torch.backends.cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_every_evaluating_process_applies_them(restored_flags, tiny_cfg):
    """configure_process (each evaluation, each worker) and configure_memory (the transfer) both do."""
    from learngene_ea.fewshot.process import configure_memory
    from learngene_ea.parallel.process import configure_process

    torch.backends.cudnn.allow_tf32 = True
    configure_process(tiny_cfg.runtime)
    assert not torch.backends.cudnn.allow_tf32 and torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.allow_tf32 = True
    configure_memory(load_config(None, ["runtime.tf32=true", "runtime.deterministic=false"]).runtime)
    assert torch.backends.cudnn.allow_tf32 and not torch.are_deterministic_algorithms_enabled()
