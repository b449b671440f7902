"""The compute kernel config fields `RunConfig.kernel_config` gives the ttnn ops, constructed by the backend's own
`build_compute_kernel_config` with the real ttnn 0.81 classes (the contract environment, mock cluster): every distinct
set of fields any run config, op and fidelity produces for Wormhole and Blackhole builds and reads back the same
values, in the architecture's class; a misspelt field does not build."""

import json
import subprocess

import pytest

from bertl11.cards import CARDS
from bertl11.config import MATH_FIDELITIES, TT_CONFIGS, get_run_config
from bertl11.ops import OPS
from tt_env import HERE, tt_environment, tt_python  # noqa: F401 (a fixture)

pytestmark = pytest.mark.ttnn

# The architectures ttnn 0.81 opens (Grayskull's class went with Grayskull).
ARCHES = sorted({card.arch for card in CARDS.values() if card.ttnn_supported})
# Each config is built as the backend builds it and read back, with the class it was built in.
BUILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import ttnn
from ttnn_probe import backend_program_configs
build = backend_program_configs().build_compute_kernel_config
out = []
for arch, fields in json.load(sys.stdin):
    try:
        config = build(ttnn, arch, fields)
    except Exception as error:
        out.append({"error": f"{type(error).__name__}: {error}"})
        continue
    read = {name: (getattr(config, name).name if name == "math_fidelity" else getattr(config, name)) for name in fields}
    out.append({"class": type(config).__name__, "fields": read})
print(json.dumps(out))
"""


def every_kernel_config() -> list[tuple[str, dict]]:
    found = {}
    for arch in ARCHES:
        for name in TT_CONFIGS:
            for fidelity in (None, *MATH_FIDELITIES):
                config = get_run_config(name, fidelity)
                for op in OPS:
                    fields = config.kernel_config(op, arch)
                    if fields is not None:
                        found[json.dumps([arch, fields], sort_keys=True)] = (arch, fields)
    return list(found.values())


def build(tt_python, requests):
    done = subprocess.run([str(tt_python), "-c", BUILD, str(HERE)], input=json.dumps(requests), capture_output=True, text=True,
                          env=tt_environment(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_kernel_config_builds_with_ttnn(tt_python):
    configs = every_kernel_config()
    assert ARCHES == ["blackhole", "wormhole_b0"] and len(configs) >= 2 * len(MATH_FIDELITIES)
    built = build(tt_python, [[arch, fields] for arch, fields in configs])
    # ttnn 0.81's Blackhole class is Wormhole's under another name.
    assert built == [{"class": "WormholeComputeKernelConfig", "fields": fields} for _, fields in configs]


def test_a_misspelt_field_is_refused(tt_python):
    fields = {**get_run_config("BFLOAT8_B-SHARDED").kernel_config("qkv", "wormhole_b0"), "packer_l1_accumulate": True}
    built = build(tt_python, [["wormhole_b0", fields]])
    assert "error" in built[0]
