"""Modules that promise not to import torch keep that promise."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["vgrout.env", "vgrout.pairs", "vgrout.metrics", "vgrout.jsonl"])
def test_module_imports_without_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
