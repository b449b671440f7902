"""Replays recorded ttnn calls (ttnn_standin.py) against the real ttnn, in the contract environment (.venv-tt:
Python 3.12, ttnn 0.81, mock cluster; no torch, no bertl11).

    ttnn_replay.py CALLS OUT     CALLS: JSON list of distinct recorded calls; OUT: JSON list of verdicts

Each call runs in a process of its own (forked from this one after ttnn is imported, so a call costs
milliseconds): some ttnn ops dereference the missing device and crash on host tensors, and a crash must be
attributed to the call that made it. Tensors are host tensors of the recorded specs (ttnn.zeros: shape, dtype,
layout); ttnn objects are rebuilt from their recorded expressions with the real classes.

A call passes when
- it reaches ttnn's "needs a device" error: a TT_FATAL that the operand is not on a device, or, for the ops
  known to read the device before checking (NULL_DEVICE_OPS), a segfault once the call has started;
- or it succeeds where it needs no device (dump_tensor, load_tensor, host-side reshape and typecast);
- or, for calls that take the device itself (open_mesh_device, to_device, from_torch, traces, events, ...), its
  arguments bind to the real function's signature, and from_torch's dtype/layout build a real host tensor;
  methods called on the device or a tensor exist on the real class.
Anything else is rejected with the error line: a TypeError, a rank or shape TT_FATAL, a wrong file extension,
a crash. A call's compute kernel config is also reported as the real object holds it (`kernel_config_read_back`).
"""

import importlib.metadata
import inspect
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import ttnn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ttnn_probe import accepted_keywords, resolve  # noqa: E402

# On host tensors these read the tensor's device (null) before any check of their own: ttnn 0.81.1 segfaults
# at address 0 (inside ttnn::prim::<op> for the first two; copy_host_to_device_tensor reads its target's
# device), after the arguments have bound (a wrong keyword or type still raises TypeError first). A segfault
# counts for them only once the call itself has started.
NULL_DEVICE_OPS = ("layer_norm", "scale_mask_softmax_in_place", "copy_host_to_device_tensor")
NEEDS_DEVICE = re.compile(
    r"must be on device|expect device tensors|need to be on device|must be on a device|StorageType::DEVICE|"
    r"device != nullptr|Operands to .* need to be (on device|allocated)"
)
FILE_FUNCTIONS = ("dump_tensor", "load_tensor")


class Device:
    """Where the recording passed the opened device: no real one exists here."""


DEVICE = Device()


def build(value):
    """A recorded value -> the real ttnn object (host tensors for tensors)."""
    if isinstance(value, list):
        return [build(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        spec = value["tensor"]
        return ttnn.zeros(spec["shape"], dtype=build(spec["dtype"]), layout=build(spec["layout"]))
    if "ttnn" in value:
        target = resolve(value["ttnn"])
        if "args" not in value:
            return target
        return target(*build(value["args"]), **{k: build(v) for k, v in value["kwargs"].items()})
    if "device" in value:
        return DEVICE
    if "torch" in value:
        return value  # from_torch's input: only its shape is used (no torch here)
    return {k: build(v) for k, v in value.items()}


# Calls that open, query or move to and from a device, or need torch: checked by binding their arguments.
BIND_ONLY = ("GetNumAvailableDevices", "get_arch_name", "open_mesh_device", "from_torch", "to_torch", "wait_for_event",
             "event_synchronize")


def takes_device(call) -> bool:
    return call["function"] in BIND_ONLY or '"device":' in json.dumps([call["args"], call["kwargs"]])


def bind(call) -> str | None:
    """Why the recorded arguments do not fit the real function's signature, or None when they do."""
    target = resolve(call["function"])
    overloads = accepted_keywords(target)
    if overloads is not None and call["kwargs"] and not any(set(call["kwargs"]) <= set(o) for o in overloads):
        return f"TypeError: {call['function']}() takes none of the keywords {sorted(call['kwargs'])} in any overload"
    function = getattr(target, "function", target)
    try:
        parameters = inspect.signature(function)
    except (TypeError, ValueError):  # a nanobind function: keywords checked above
        return None
    try:
        parameters.bind(*call["args"], **call["kwargs"])
    except TypeError as error:
        return f"TypeError: {error}"
    return None


def run_call(call, directory, started):
    """Executes one call in this (forked) process; returns (outcome, message). `started` is created just
    before the ttnn function itself is entered (after every argument is built)."""
    function = call["function"]
    if takes_device(call):
        problem = bind(call)
        if problem:
            return "raised", problem
        if function == "from_torch":  # the host half, without torch: this shape in this dtype and layout
            shape = call["args"][0]["torch"]["shape"]
            ttnn.zeros(shape, dtype=build(call["kwargs"].get("dtype")), layout=build(call["kwargs"].get("layout")))
        return "bound", ""
    args = build(call["args"])
    kwargs = {k: build(v) for k, v in call["kwargs"].items()}
    if function in FILE_FUNCTIONS:
        args[0] = str(Path(directory) / args[0])
        if function == "load_tensor":  # the file the recording loaded: a real dump of the recorded result
            result = call["result"]
            ttnn.dump_tensor(str(Path(directory) / "input.tensorbin"), build({"tensor": result}))
            os.replace(Path(directory) / "input.tensorbin", args[0])
    target = resolve(function)
    started.touch()
    target(*args, **kwargs)
    return "ok", ""


def kernel_config_read_back(call):
    """The call's compute kernel config rebuilt with the real class and read back field by field (the fidelity by
    name), with the class path it was recorded under; None when the call passes none."""
    recorded = call["kwargs"].get("compute_kernel_config")
    if recorded is None:
        return None
    try:
        config = build(recorded)
    except Exception as error:  # noqa: BLE001 - the call itself is rejected for it too
        return {"class": recorded["ttnn"], "error": f"{type(error).__name__}: {first_line(error)}"}
    fields = {}
    for name in recorded["kwargs"]:
        value = getattr(config, name)
        fields[name] = value.name if isinstance(value, ttnn.MathFidelity) else value
    return {"class": recorded["ttnn"], "fields": fields}


def first_line(text):
    lines = [line for line in str(text).splitlines() if line.strip() and not line.startswith(" ---")]
    info = next((lines[i + 1] for i, line in enumerate(lines[:-1]) if line.strip() == "info:"), "")
    return (lines[0] if lines else "") + (f" | {info}" if info else "")


def replay(call, directory):
    """Forks; the child runs the call with its stdout/stderr in a file; the parent judges how it ended. Methods
    called on a device or a tensor (`MeshDevice.enable_program_cache`, `Tensor.deallocate`) take no arguments:
    they pass when the real class has them."""
    if call["function"].startswith(("MeshDevice.", "Tensor.")):
        try:
            resolve(call["function"])
        except AttributeError:
            return "reject", f"AttributeError: ttnn.{call['function']} does not exist"
        return "pass", "binds to the real signature (a method of the real class)"
    log = Path(directory) / "child.log"
    verdict = Path(directory) / "verdict.json"
    started = Path(directory) / "started"
    verdict.unlink(missing_ok=True)
    started.unlink(missing_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            outcome, message = run_call(call, directory, started)
        except Exception as error:  # noqa: BLE001 - every error is a verdict
            outcome, message = "raised", f"{type(error).__name__}: {first_line(error)}"
        verdict.write_text(json.dumps([outcome, message]))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signal = os.WTERMSIG(status)
        inside = started.exists()
        if signal == 11 and inside and call["function"] in NULL_DEVICE_OPS:
            return "pass", "needs a device (segfaults reading the missing device, after its arguments bound)"
        return "reject", f"crashed with signal {signal} {'inside the call' if inside else 'building its arguments'}"
    outcome, message = json.loads(verdict.read_text())
    if outcome == "ok":
        return "pass", "ran on the host"
    if outcome == "bound":
        return "pass", "binds to the real signature (takes the device)"
    if NEEDS_DEVICE.search(message) and not message.startswith("TypeError"):
        return "pass", "needs a device"
    return "reject", message


def main(calls_path, out_path):
    calls = json.loads(Path(calls_path).read_text())
    results = []
    with tempfile.TemporaryDirectory(prefix="ttnn-replay-") as directory:
        for call in calls:
            verdict, message = replay(call, directory)
            results.append({"function": call["function"], "where": call["where"], "verdict": verdict, "message": message,
                            "compute_kernel_config": kernel_config_read_back(call)})
    Path(out_path).write_text(json.dumps({"ttnn": importlib.metadata.version("ttnn"), "results": results}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
