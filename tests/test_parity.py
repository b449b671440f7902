"""The torch backend against HF transformers' BertForQuestionAnswering holding identical weights."""

import pytest
import torch

from bertl11 import QAModel, resolve_model
from bertl11.compare import max_abs_diff, pcc
from conftest import encode

FLOAT32_RELATIVE_TOLERANCE = 1e-5
MODELS = ["tiny", "minilm", "minilm-squad2", pytest.param("large-random-2", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=MODELS)
def case(request, squad_pairs):
    source = resolve_model(request.param)
    batch = encode(source.tokenizer, squad_pairs[:6])
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max(), "the batch must mix lengths so padding is exercised"
    with torch.no_grad():
        reference = source.hf_model()(**batch)
    return source, batch, reference


def run(source, config, batch, math_fidelity=None):
    model = QAModel.load(source, config, math_fidelity=math_fidelity)
    return model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])


def test_float32_matches_hf(case, record_property):
    source, batch, reference = case
    start, end = run(source, "FLOAT32", batch)
    for ours, theirs, name in ((start, reference.start_logits, "start"), (end, reference.end_logits, "end")):
        diff = max_abs_diff(ours, theirs)
        record_property(f"{source.name}_{name}_max_abs_diff", diff)
        assert pcc(ours, theirs) >= 0.9999
        # Same math in float32 differs only by summation order (~1e-6 relative); a wrong GELU (tanh instead
        # of erf) leaves PCC near 1 but moves minilm and BERT-large logits by 1e-4 to 2e-3 relative.
        assert diff <= FLOAT32_RELATIVE_TOLERANCE * float(theirs.abs().max()), f"{name} max abs diff {diff:.3g}"
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1)), f"{name} argmax differs"


def test_bfloat16_matches_float32_hf(case):
    """What the bfloat16 format costs, with every matmul at HiFi4 (exact on bfloat16 operands); the seed's LoFi
    matmuls cost more (docs/squad.md)."""
    source, batch, reference = case
    start, end = run(source, "BFLOAT16-DRAM", batch, math_fidelity="HiFi4")
    assert pcc(start, reference.start_logits) >= 0.99
    assert pcc(end, reference.end_logits) >= 0.99


@pytest.mark.parametrize("fast", [False, True], ids=["11-ops", "fast-sdpa"])
def test_padding_is_masked(case, fast):
    """A padded row gives the logits it gets alone; without the mask it would not. Both torch paths: the
    11-op simulation and the fast path's fused attention (float32, so only summation order differs)."""
    source, batch, _ = case
    model = QAModel.load(source, "FLOAT32", fast=fast)
    row = int(batch["attention_mask"].sum(1).argmin())
    length = int(batch["attention_mask"][row].sum())
    alone = {k: v[row : row + 1, :length] for k, v in batch.items()}
    start_alone, _ = model(alone["input_ids"], alone["token_type_ids"], alone["attention_mask"])
    start_padded, _ = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert max_abs_diff(start_padded[row, :length], start_alone[0]) < 1e-4
    unmasked, _ = model(batch["input_ids"], batch["token_type_ids"], torch.ones_like(batch["attention_mask"]))
    assert max_abs_diff(unmasked[row, :length], start_alone[0]) > 1e-3, "padding should change unmasked logits"
