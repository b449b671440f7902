"""allocator.keep_freed_memory, checked against the kernel's own page-fault count: after it, a forward reuses the
memory the one before it freed instead of faulting fresh pages in again."""

import os
import subprocess
import sys

import pytest

FAULTS_PER_FORWARD = """
import resource, sys, torch
from bertl11 import allocator
print(allocator.keep_freed_memory(), file=sys.stderr)
def forward():  # three 48 MiB activations, as one op of a batch-8 BERT-large forward makes
    x = torch.ones(3072, 4096)
    y = (x * 2).relu_()
    return float((y + x).sum())
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    forward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(sum([faults() for _ in range(10)][2:]))  # forwards 3 to 10: 24 activations
"""
ACTIVATION_PAGES = 3072 * 4096 * 4 // 4096

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and Linux's fault count")


def faults_per_forward(**variables):
    result = subprocess.run([sys.executable, "-c", FAULTS_PER_FORWARD], capture_output=True, text=True, check=True,
                            env={**os.environ, **variables})
    return int(result.stdout), result.stderr.strip()


def test_a_later_forward_faults_nothing_in():
    faults, said = faults_per_forward()
    assert said.startswith("freed memory kept for reuse"), said
    # glibc's heap still grows now and then (seen: up to 3 activations in 8 forwards), so the bound is a quarter
    assert faults <= 6 * ACTIVATION_PAGES, "at most a quarter of the 24 activations glibc's default faults in"


def test_the_variable_leaves_glibc_giving_memory_back():
    faults, said = faults_per_forward(BERTL11_KEEP_FREED_MEMORY="0")
    assert "BERTL11_KEEP_FREED_MEMORY=0" in said
    assert faults >= 22 * ACTIVATION_PAGES, "glibc's default: all 24 large activations faulted in afresh"


def test_a_bad_value_is_a_user_error(monkeypatch):
    from bertl11 import allocator
    from bertl11.errors import UserError

    monkeypatch.setenv("BERTL11_KEEP_FREED_MEMORY", "yes")
    allocator.keep_freed_memory.cache_clear()
    with pytest.raises(UserError, match="BERTL11_KEEP_FREED_MEMORY='yes': choose one of 1, 0"):
        allocator.keep_freed_memory()
    allocator.keep_freed_memory.cache_clear()
