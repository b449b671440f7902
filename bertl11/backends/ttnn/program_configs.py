"""Program configs: a plan's program configs and the run config's compute kernel configs, as plain data (`plan` types'
`ttnn_config`, `RunConfig.kernel_config`), made into ttnn objects.

Kept free of torch and of package imports so the ttnn contract tier, which runs in an environment with ttnn
but without torch or bertl11 installed, loads this very file and builds every plan's configs with it.
"""

from functools import reduce

# Each chip architecture's compute kernel config class, as its path under `ttnn`. ttnn 0.81 exports Wormhole's at the
# top level; Blackhole's is an alias of it reachable only as ttnn.types.BlackholeComputeKernelConfig; Grayskull's
# (math_fidelity and math_approx_mode only) left ttnn with Grayskull itself after tt-metal v0.55.
COMPUTE_KERNEL_CONFIG_CLASSES = {
    "grayskull": "GrayskullComputeKernelConfig",
    "wormhole_b0": "WormholeComputeKernelConfig",
    "blackhole": "types.BlackholeComputeKernelConfig",
}


def program_config_spec(program) -> tuple[str, dict]:
    """(ttnn class name, keyword arguments) of a plan's program config; ("", {}) for none (ttnn's default program)."""
    return ("", {}) if program is None else program.ttnn_config()


def ttnn_value(ttnn, value):
    """A spec value as ttnn wants it: {"CoreCoord": [x, y]} and {"UnaryWithParam": [op, param]} become objects."""
    if isinstance(value, dict) and "CoreCoord" in value:
        return ttnn.CoreCoord(*value["CoreCoord"])
    if isinstance(value, dict) and "UnaryWithParam" in value:
        op, param = value["UnaryWithParam"]
        return ttnn.UnaryWithParam(getattr(ttnn.UnaryOpType, op), param)
    return value


def build_program_config(ttnn, spec: tuple, default: str):
    """Construct a (class name, kwargs) spec with the real classes; `default` names the class for no program."""
    name, kwargs = spec
    if not name:
        return getattr(ttnn, default)()
    return getattr(ttnn, name)(**{key: ttnn_value(ttnn, value) for key, value in kwargs.items()})


def build_compute_kernel_config(ttnn, arch: str, fields: dict):
    """Construct an op's compute kernel config fields (`RunConfig.kernel_config`, fidelity by name) with the class of
    the chip's architecture (`COMPUTE_KERNEL_CONFIG_CLASSES`)."""
    config_class = reduce(getattr, COMPUTE_KERNEL_CONFIG_CLASSES[arch].split("."), ttnn)
    return config_class(**{**fields, "math_fidelity": getattr(ttnn.MathFidelity, fields["math_fidelity"])})
