"""Runs under the ttnn contract environment (.venv-tt: Python 3.12, ttnn 0.81, numpy, no torch, no bertl11).

    ttnn_probe.py api OUT        stdin: JSON {"names": [[path, [keywords...], line]...], "program_configs": [[class, kwargs]...],
                                 "methods": [[class, attribute]...]}; OUT: JSON report of what the real ttnn lacks
    ttnn_probe.py formats DIR    writes deterministic inputs and ttnn's host encodings of them into DIR
    ttnn_probe.py no-card OUT    what ttnn says when asked for devices without a card (run without the mock cluster)

Results go to files: ttnn logs to stdout.
"""

import importlib.metadata
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import ttnn


def resolve(path):
    target = ttnn
    for part in path.split("."):
        target = getattr(target, part)
    return target


def _split_top_level(text):
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def nanobind_parameters(signature):
    """Parameter names of one nanobind signature string ('def f(self, a: T, *, b: U = \\0) -> R'); None for **kwargs."""
    inside = signature[signature.index("(") + 1:signature.rindex(")")]
    names = []
    for part in _split_top_level(inside):
        part = part.strip().replace("\\", "")
        if part.startswith("**"):
            return None
        name = re.match(r"[A-Za-z_]\w*", part)
        if name and name.group(0) != "self":
            names.append(name.group(0))
    return names


def accepted_keywords(obj):
    """Every overload's keyword names for a ttnn callable: C++ operations, nanobind functions, classes, Python
    functions. None means it takes any keyword."""
    import inspect

    if hasattr(obj, "function") and hasattr(obj, "python_fully_qualified_name"):  # ttnn FastOperation
        obj = obj.function
        call = getattr(type(obj), "__call__", None)
        if getattr(call, "__nb_signature__", None):
            obj = call
    if isinstance(obj, type):
        obj = obj.__init__
    signatures = getattr(obj, "__nb_signature__", None)
    if signatures:
        overloads = [nanobind_parameters(entry[0]) for entry in signatures]
        return None if any(o is None for o in overloads) else overloads
    parameters = inspect.signature(obj).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [[p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]]


def backend_program_configs():
    """The backend's own spec -> ttnn object code (bertl11/backends/ttnn/program_configs.py), loaded by path:
    bertl11 itself needs torch, which this environment lacks."""
    path = Path(__file__).resolve().parents[2] / "bertl11" / "backends" / "ttnn" / "program_configs.py"
    spec = importlib.util.spec_from_file_location("program_configs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_back(value):
    if isinstance(value, ttnn.CoreCoord):
        return {"CoreCoord": [value.x, value.y]}
    if isinstance(value, ttnn.UnaryWithParam):
        return {"UnaryWithParam": [value.op_type.name, list(value.params)[0] if list(value.params) else None]}
    return value


def api(out):
    request = json.load(sys.stdin)
    report = {"missing": [], "bad_keywords": [], "config_errors": [], "checked_names": 0, "checked_keywords": 0, "configs": 0}
    for path, keywords, line in request["names"]:
        try:
            target = resolve(path)
        except AttributeError:
            report["missing"].append(f"ttnn.{path} (line {line})")
            continue
        report["checked_names"] += 1
        if not keywords:
            continue
        overloads = accepted_keywords(target)
        report["checked_keywords"] += len(keywords)
        if overloads is not None and not any(set(keywords) <= set(o) for o in overloads):
            unknown = sorted(set(keywords) - set().union(*map(set, overloads)))
            report["bad_keywords"].append(f"ttnn.{path}(... {', '.join(unknown or keywords)}=) (line {line})")
    for cls, attribute in request["methods"]:
        if not hasattr(resolve(cls), attribute):
            report["missing"].append(f"ttnn.{cls}.{attribute}")
    program_configs = backend_program_configs()
    for name, kwargs in request["program_configs"]:
        try:
            config = program_configs.build_program_config(ttnn, (name, kwargs), default="")
            for key, value in kwargs.items():
                got = read_back(getattr(config, key))
                if got != value and not (value is None and got is None):
                    report["config_errors"].append(f"{name}.{key}: passed {value}, reads back {got}")
        except (AttributeError, TypeError, ValueError, RuntimeError) as error:
            report["config_errors"].append(f"{name}({kwargs}): {type(error).__name__}: {error}")
        report["configs"] += 1
    Path(out).write_text(json.dumps(report))


def test_values(rng):
    """[64, 96] floats that exercise the format: ties, values far below their group's maximum, zeros,
    negative values, denormals, a wide spread of magnitudes."""
    x = (rng.standard_normal((64, 96)) * np.exp2(rng.integers(-12, 12, (64, 96)))).astype(np.float32)
    x[0, :16] = [1.0, 1 / 3, 0.0234, -2.5, 1e-30, 0.0, 100.0, 0.0625, 1.5, -1.5, 1.0078125, 1.01171875, 3.0, -0.0, 7.0, 2e-39]
    x[1, :16] = 1.0 + np.arange(16, dtype=np.float32) / 256  # steps below the 7-bit grid: rounding ties
    x[2, :] = 0.0
    return x


def payload(tensor, path, size):
    """The tensor's bytes as ttnn's dump_tensor writes them, without the header in front."""
    ttnn.dump_tensor(str(path), tensor)
    data = path.read_bytes()
    if len(data) <= size:
        raise SystemExit(f"{path}: {len(data)} bytes, expected a header plus {size}")
    return data[len(data) - size:]


def formats(directory):
    directory = Path(directory)
    x = test_values(np.random.default_rng(20261128))
    np.save(directory / "inputs.npy", x, allow_pickle=False)
    values = x.reshape(-1).tolist()
    packed = ttnn.Tensor(values, list(x.shape), ttnn.bfloat8_b, ttnn.TILE_LAYOUT)
    tiles = x.size // 1024
    (directory / "bfloat8_b.bin").write_bytes(payload(packed, directory / "bfloat8_b.tensorbin", tiles * 1088))
    np.save(directory / "bfloat8_b_values.npy", np.asarray(packed.to(ttnn.ROW_MAJOR_LAYOUT).to_numpy(), dtype=np.float32), allow_pickle=False)
    tiled = ttnn.Tensor(values, list(x.shape), ttnn.bfloat16, ttnn.TILE_LAYOUT)
    (directory / "bfloat16_tile.bin").write_bytes(payload(tiled, directory / "bfloat16.tensorbin", x.size * 2))
    loaded = ttnn.load_tensor(str(directory / "bfloat8_b.tensorbin"))
    report = {
        "load_roundtrip": loaded.dtype == ttnn.bfloat8_b and loaded.layout == ttnn.TILE_LAYOUT and list(loaded.shape) == list(x.shape),
        # What the .tensorbin cache header must read the version from (ttnn 0.81 has no __version__).
        "has_version_attribute": hasattr(ttnn, "__version__"),
        "metadata_version": importlib.metadata.version("ttnn"),
    }
    (directory / "report.json").write_text(json.dumps(report))


def no_card(out):
    try:
        result = {"raised": None, "found": ttnn.GetNumAvailableDevices()}
    except RuntimeError as error:
        result = {"raised": type(error).__name__, "message": str(error), "arch": ttnn.get_arch_name()}
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "api":
        api(sys.argv[2])
    elif command == "formats":
        formats(sys.argv[2])
    elif command == "no-card":
        no_card(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {command}")
