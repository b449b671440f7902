"""The simulation (`TorchOps`) in its two compute modes, forced through BERTL11_GEMM_DTYPE on any machine:
bfloat16 GEMMs (native where the CPU has them) and float32 GEMMs on the same bfloat16 operands (what a CPU
without native bfloat16 runs). Both must give the same numbers, and both must still round every op output
through the config's storage dtypes."""

import pytest
import torch

from bertl11 import RUN_CONFIGS, QAModel, UserError, machine, resolve_model
from bertl11.backends.torch import round_to
from bertl11.compare import pcc
from bertl11.config import BFLOAT8_B, BFLOAT16, FLOAT32
from bertl11.model import bert_qa
from bertl11.ops import DATA_MOVEMENT, OPS
from bertl11.recording import Recording
from conftest import encode

# Two native bfloat16 kernels of one CPU disagree this much already: on minilm (6 SQuAD pairs), oneDNN's
# AMX and AVX512-BF16 GEMMs give PCC 0.99989 (MIXED_PRECISION) and 0.99993 (BFLOAT16) to each other, since
# any change of summation order moves some bfloat16 roundings by one step and 6 layers amplify them; on the
# 4 x 128 batch here float32 and AMX bfloat16 GEMMs give 0.99979. A wrong emulation (float32 op outputs
# that skip the bfloat16 rounding) gives 0.9965.
MODE_AGREEMENT = 0.9995
MODELS = ["tiny", "minilm", pytest.param("large-random-2", marks=pytest.mark.slow)]
# One config per distinct numerics: configs differing only in placement (DRAM, L1, SHARDED) compute alike.
NUMERICS = {(c.weights, c.activations, c.bf16_tensors): name for name, c in reversed(RUN_CONFIGS.items())}
SIMULATED = [name for name, c in RUN_CONFIGS.items() if c.weights != FLOAT32]


@pytest.fixture(scope="module", params=MODELS)
def case(request, squad_pairs):
    source = resolve_model(request.param)
    # Short windows keep this cheap where bfloat16 GEMMs run on reference kernels (AVX2: ~200x float32).
    batch = encode(source.tokenizer, squad_pairs[:4], max_length=128)
    return source, (batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]), {}


def run_in_mode(monkeypatch, source, config, inputs, mode):
    monkeypatch.setenv(machine.GEMM_DTYPE_VARIABLE, mode)
    model = QAModel.load(source, config)
    assert model.ops.gemm_dtype == getattr(torch, mode) and model.ops.dtype == torch.bfloat16
    return model(*inputs)


@pytest.mark.parametrize("config", SIMULATED)
def test_both_compute_modes_agree(case, config, monkeypatch):
    source, inputs, results = case
    c = RUN_CONFIGS[config]
    key = NUMERICS[c.weights, c.activations, c.bf16_tensors]
    if key not in results:  # computed once per distinct numerics
        results[key] = {mode: run_in_mode(monkeypatch, source, key, inputs, mode) for mode in machine.GEMM_DTYPES}
    native, emulated = results[key]["bfloat16"], results[key]["float32"]
    for ours, theirs, name in zip(emulated, native, ("start", "end")):
        assert pcc(ours, theirs) >= MODE_AGREEMENT, f"{name} logits"
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1)), f"{name} argmax differs"


# Op -> the tensor name whose storage dtype its output is held in (the op table; data movement rounds nothing).
STORED = {name: op.output for name, op in OPS.items() if op.output and op.kind != DATA_MOVEMENT}


def op_outputs(monkeypatch, config, mode):
    """(tensor name, output) of every op that rounds its output, and the additive mask the backend makes."""
    source = resolve_model("tiny")
    monkeypatch.setenv(machine.GEMM_DTYPE_VARIABLE, mode)
    model = QAModel.load(source, config)
    batch = encode(source.tokenizer, [("Who wrote it?", "Victor Hugo wrote it in exile, on Guernsey.")] * 2)
    recording = Recording(model.ops, keep_outputs=lambda call: call.op in STORED)
    with torch.inference_mode():
        bert_qa(recording, model.params, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], model.shape)
        mask = model.ops.attention_mask(batch["attention_mask"])
    kept = [(STORED[call.op], out) for call in recording.calls if call.outputs for out in call.outputs]
    return model.run_config, kept + [("attention_mask", mask)]


# The storage dtypes each config's op outputs and mask use (the seed's tt/model_config.py: BFLOAT8_B-SHARDED hands
# the sharded softmax a bfloat16 mask).
STORAGE_DTYPES = {"BFLOAT8_B-SHARDED": {BFLOAT8_B, BFLOAT16}, "BFLOAT16-DRAM": {BFLOAT16}, "MIXED_PRECISION_BATCH8": {BFLOAT8_B, BFLOAT16}}


@pytest.mark.parametrize("mode", machine.GEMM_DTYPES)
@pytest.mark.parametrize("config", list(STORAGE_DTYPES))
def test_every_op_output_is_held_in_its_storage_dtype(config, mode, monkeypatch):
    """Each op output is a fixed point of rounding through its storage dtype (and a BFLOAT8_B output is not
    merely bfloat16): skipping a rounding in either mode fails here."""
    run_config, outputs = op_outputs(monkeypatch, config, mode)
    dtypes = set()
    for tensor_name, out in outputs:
        dtype = run_config.dtype_of(tensor_name)
        dtypes.add(dtype)
        assert out.dtype == getattr(torch, mode), tensor_name  # held in the GEMM dtype, its values rounded
        assert torch.equal(round_to(out.float(), dtype), out.float()), f"{tensor_name} is not held in {dtype}"
    assert dtypes == STORAGE_DTYPES[config]


def test_bfloat8_b_outputs_would_fail_the_check_without_rounding(monkeypatch):
    """The fixed-point check has teeth: FLOAT32 op outputs are neither BFLOAT8_B nor bfloat16 values."""
    _, outputs = op_outputs(monkeypatch, "FLOAT32", "float32")
    for tensor_name, out in outputs:
        if tensor_name != "attention_mask":  # 0 and -100000 are exact in every format
            assert not torch.equal(round_to(out, BFLOAT16), out), tensor_name
            assert not torch.equal(round_to(out, BFLOAT8_B), out), tensor_name


def test_forced_mode_is_validated(monkeypatch):
    monkeypatch.setenv(machine.GEMM_DTYPE_VARIABLE, "float16")
    with pytest.raises(UserError, match="BERTL11_GEMM_DTYPE='float16': choose one of bfloat16, float32"):
        machine.probe().gemm_dtype()
