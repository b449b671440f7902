"""The compute kernel config fields `RunConfig.kernel_config` gives the ttnn ops, constructed with the real ttnn 0.81
classes (the contract environment, mock cluster): every distinct set of fields any run config, op and fidelity
produces for Wormhole and Blackhole builds and reads back the same values, and a misspelt fidelity does not."""

import json
import subprocess

import pytest

from bertl11.config import MATH_FIDELITIES, TT_CONFIGS, get_run_config
from bertl11.ops import OPS
from tt_env import tt_environment, tt_python  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ttnn

# Wormhole's class, and Blackhole's (an alias of it in 0.81, reachable as ttnn.types.BlackholeComputeKernelConfig).
CLASSES = {"wormhole_b0": "ttnn.WormholeComputeKernelConfig", "blackhole": "ttnn.types.BlackholeComputeKernelConfig"}
BUILD = """
import json, sys
import ttnn
out = []
for arch, path, fields in json.load(sys.stdin):
    cls = eval(path)
    try:
        config = cls(**{**fields, "math_fidelity": getattr(ttnn.MathFidelity, fields["math_fidelity"])})
    except Exception as error:
        out.append({"error": f"{type(error).__name__}: {error}"})
        continue
    out.append({name: (getattr(config, name).name if name == "math_fidelity" else getattr(config, name)) for name in fields})
print(json.dumps(out))
"""


def every_kernel_config() -> list[tuple[str, dict]]:
    found = {}
    for arch in CLASSES:
        for name in TT_CONFIGS:
            for fidelity in (None, *MATH_FIDELITIES):
                config = get_run_config(name, fidelity)
                for op in OPS:
                    fields = config.kernel_config(op, arch)
                    if fields is not None:
                        found[json.dumps([arch, fields], sort_keys=True)] = (arch, fields)
    return list(found.values())


def build(tt_python, requests):
    done = subprocess.run([str(tt_python), "-c", BUILD], input=json.dumps(requests), capture_output=True, text=True,
                          env=tt_environment(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_kernel_config_builds_with_ttnn(tt_python):
    configs = every_kernel_config()
    assert len(configs) >= 2 * len(MATH_FIDELITIES)
    built = build(tt_python, [[arch, CLASSES[arch], fields] for arch, fields in configs])
    assert built == [fields for _, fields in configs]


def test_a_misspelt_field_is_refused(tt_python):
    fields = {**get_run_config("BFLOAT8_B-SHARDED").kernel_config("qkv", "wormhole_b0"), "packer_l1_accumulate": True}
    built = build(tt_python, [["wormhole_b0", CLASSES["wormhole_b0"], fields]])
    assert "error" in built[0]
