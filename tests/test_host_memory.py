"""``runtime.keep_freed_memory``: training steps reuse the pages of the last step."""
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from learngene_ea.core.process_settings import THIS_PROCESS
from learngene_ea.fewshot import process
from learngene_ea.config.loading import load_config

from conftest import ROOT

# A Conv4 x0.5 descendant's training steps (batch 48 at 32 px: 6 MB activations) in a fresh
# process, with or without keep_freed_memory; prints the minor page faults of steps 20-79.
TRAINING_STEPS = textwrap.dedent("""
    import json, resource, sys, torch
    from learngene_ea.core.models import build_model
    from learngene_ea.fewshot.process import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else None
    torch.set_num_threads(1)
    model = build_model("conv4", 0.5, 3, 5, seed=0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(48, 3, 32, 32), torch.randint(0, 5, (48,))
    faults = []
    for step in range(80):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimiser.step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({"applied": applied, "faults_after_warm_up": sum(faults[20:])}))
""")
ACTIVATION_PAGES = 48 * 32 * 32 * 32 * 4 // 4096  # one conv layer's output: 1,536 pages


def training_step_faults(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", TRAINING_STEPS, mode], capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_kept_memory_lets_training_steps_reuse_their_pages():
    """After warm-up, 60 steps page-fault in less than four activations' worth of memory in all
    (kept: 0-3,073 faults in 6 measurements; glibc's defaults: 10,656-122,430, one activation's
    pages again every few steps)."""
    kept = training_step_faults("keep")
    assert kept["applied"] is True
    assert kept["faults_after_warm_up"] < 4 * ACTIVATION_PAGES


@pytest.mark.parametrize("keep", [True, False])
def test_the_recipe_decides_whether_an_evaluating_process_keeps_freed_memory(keep, monkeypatch):
    calls = []
    monkeypatch.setattr(process, "keep_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(THIS_PROCESS, "threads_set", True)  # leave this process's thread count alone
    process.configure_process(SimpleNamespace(threads=1, channels_last=False, keep_freed_memory=keep,
                                              deterministic=True, tf32=False, precision="fp32"))
    assert calls == (["kept"] if keep else [])


def test_keeping_freed_memory_is_the_default_and_can_be_turned_off():
    assert load_config(None, []).runtime.keep_freed_memory is True
    assert load_config(None, ["runtime.keep_freed_memory=false"]).runtime.keep_freed_memory is False
