"""The ops on Tenstorrent chips: `TtnnOps`, the `Backend` whose every op is a straight run of ttnn calls with its dtype,
memory config and program config at the call site, placed by the sharding plan, each tensor it makes freed after its
last use.

Every op runs with the program config and memory config the plan (`bertl11.plan`) derives for the card's grid, the
batch and the run config; every matmul, softmax and layernorm also with the compute kernel config the run config gives
it for the chip's architecture (`RunConfig.kernel_config`, what the torch simulation computes). BFLOAT8_B-SHARDED
keeps activations block-sharded in L1 exactly as the seed's metal_BERT_large_11 does. Names follow ttnn 0.81
(tenstorrent/tt-metal ttnn/cpp/ttnn/operations/**/*_nanobind.cpp); the contract tier (tests/contract) checks every
`ttnn.` name and keyword used in this package against the real package. The chips, the traced forward and the weight
cache live beside this file (device.py, trace.py, weights.py); the ops only ask them for what they hold.

Memory: ops never free their inputs; the model calls `release` after a tensor's last use (`model.py`); what an op
allocates itself (uploads, lookups, copies, a residual an interleaved layernorm does not overwrite) it frees itself.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...cards import COL_MAJOR
from ...config import BFLOAT16, BertShape, RunConfig
from ...errors import UserError
from ...ops import LAYER_INPUT, OPS, Backend
from ...plan import HEIGHT_SHARDED, INTERLEAVED, EncoderShape, Plan, make_plan
from ...weights import parameter_tree
from ..torch import MASK_VALUE
from .device import SINGLE_CHIP, import_ttnn, open_chips
from .program_configs import build_compute_kernel_config, build_program_config, program_config_spec
from .trace import TracedForward, trace_region_bytes
from .weights import TensorbinWeights


class TtnnOps(Backend):
    """`Backend` on Tenstorrent chips. Activations are ttnn tensors [B, 1, S, H] in tile layout.

    mesh: (rows, columns) of chips run data parallel: weights replicated on every chip, the batch split
    along dim 0, the logits joined back; the plan is per chip (global batch = per-chip batch x chips).
    trace: `forward_stream` captures the whole model once per input shape and replays it (`trace.TracedForward`).
    """

    def __init__(self, shape: BertShape, run_config: RunConfig, weight_cache: Path | None = None, source_manifest: Path | None = None,
                 trace: bool = False, mesh: tuple[int, int] = SINGLE_CHIP):
        """weight_cache: where this backend keeps its .tensorbin files; source_manifest: the safetensors cache's
        manifest they were converted from."""
        self.ttnn = import_ttnn()
        self.shape = shape
        self.run_config = run_config
        self.trace = trace
        self.chips, self.card = open_chips(self.ttnn, tuple(mesh), trace_region_bytes() if trace else 0)
        self.mesh_device = self.chips.mesh_device
        self.torch_device = torch.device("cpu")  # the model hands inputs over on the host; the ops upload them
        self.weights = TensorbinWeights(self.chips, self.card.arch, run_config, weight_cache, source_manifest)
        self.traced = TracedForward(self.chips)
        self.plan: Plan | None = None  # the current batch's (per chip), from begin_batch
        self._positions: dict[tuple[int, int], object] = {}  # position ids stay on the device, per input shape
        self._capturing = False  # the model runs on the trace's device inputs and leaves its logits on the device
        self._captured = None  # those logits

    # ------------------------------------------------------------------ the backend

    def prepare(self, flat: dict[str, torch.Tensor]):
        tensors, self.cache_detail = self.weights.prepare(flat, self._groups())
        return parameter_tree(tensors)

    def begin_batch(self, batch: int, seq: int) -> None:
        """Every op of the batch runs with the plan for its per-chip batch and sequence length. Inside a trace
        capture the model sees the per-chip device inputs; `forward_stream` has set the plan already."""
        if self._capturing:
            return
        if batch % self.chips.count:
            rows, columns = self.chips.shape
            raise UserError(f"--mesh {rows}x{columns}: the batch ({batch}) must be a multiple of its {self.chips.count} chips")
        per_chip = batch // self.chips.count
        if self.plan is None or self.plan.batch != per_chip or self.plan.shape.seq != seq:
            self.plan = self._plan_for(per_chip, seq)

    def synchronize(self) -> None:
        self.ttnn.synchronize_device(self.mesh_device)

    def describe(self) -> str:
        chips = f"{self.chips.count} x " if self.chips.count > 1 else ""
        return f"{self.run_config.name} on {chips}{self.card.title}" + (", traced" if self.trace else "")

    def release(self, t) -> None:
        if not any(t is kept for kept in (*self._positions.values(), *self.traced.inputs)):
            self.ttnn.deallocate(t)

    def close(self) -> None:
        self.traced.release()
        self.chips.close()

    def forward(self, model, params, input_ids, token_type_ids, attention_mask, shape):
        """Start and end logits [B, S] for one batch: untraced, the model op by op; traced, one execute_trace."""
        if not self.trace:
            return super().forward(model, params, input_ids, token_type_ids, attention_mask, shape)
        (logits,) = self.forward_stream(model, params, [(input_ids, token_type_ids, attention_mask)], shape)
        return logits

    def forward_stream(self, model, params, batches, shape):
        """Traced: each batch's logits once the next batch runs (`trace.TracedForward.run`); untraced, op by op."""
        if not self.trace:
            yield from super().forward_stream(model, params, batches, shape)
            return

        def staged():
            for input_ids, token_type_ids, attention_mask in batches:
                batch, seq = input_ids.shape
                self.begin_batch(batch, seq)
                yield (batch, seq), self._host_inputs(input_ids, token_type_ids, attention_mask)

        for logits in self.traced.run(staged(), lambda inputs: self._on_device_inputs(model, params, inputs, shape)):
            yield logits[..., 0], logits[..., 1]

    def _on_device_inputs(self, model, params, inputs, shape):
        """The model on inputs already in device buffers (the trace's); returns the logits it leaves on the device."""
        self._capturing = True
        try:
            model(self, params, *inputs, shape)
        finally:
            self._capturing = False
        return self._captured

    # ------------------------------------------------------------------ placement

    def _plan_for(self, batch: int, seq: int) -> Plan:
        return make_plan(self.card, batch, self.run_config, EncoderShape.from_bert(self.shape, seq))

    def _groups(self) -> int:
        """QKV interleave groups: the same for every batch on this card (derived at the largest batch)."""
        return self._plan_for(self.card.batch_range[1], EncoderShape().seq).qkv_groups

    def _dtype(self, tensor: str):
        return getattr(self.ttnn, self.run_config.dtype_of(tensor))

    def _output_dtype(self, op: str):
        return self._dtype(OPS[op].output)

    def _memory(self, tensor: str):
        """The memory config the plan gives a tensor of the dataflow (an op's output, or the layer's input). Block-sharded
        tensors get their whole shard spec from the plan, so tensors the plan places alike (a layernorm's input and
        residual) have equal memory configs; the attention's height-sharded tensors get theirs from their op."""
        ttnn = self.ttnn
        placement = self.plan.placement(tensor)
        if placement.layout == INTERLEAVED:
            return ttnn.DRAM_MEMORY_CONFIG if placement.buffer == "DRAM" else ttnn.L1_MEMORY_CONFIG
        if placement.layout == HEIGHT_SHARDED:
            return ttnn.MemoryConfig(ttnn.TensorMemoryLayout.HEIGHT_SHARDED, ttnn.BufferType.L1)
        x, y = self.plan.grid
        cores = ttnn.CoreRangeSet([ttnn.CoreRange(ttnn.CoreCoord(0, 0), ttnn.CoreCoord(x - 1, y - 1))])
        shard = ttnn.ShardSpec(cores, list(placement.shard_shape), self._orientation())
        return ttnn.MemoryConfig(ttnn.TensorMemoryLayout.BLOCK_SHARDED, ttnn.BufferType.L1, shard)

    def _program(self, op: str, default: str = ""):
        return build_program_config(self.ttnn, program_config_spec(self.plan.ops[op].program), default)

    def _compute(self, op: str):
        """The compute kernel config `op` runs with: the run config's fields, in this chip architecture's class. Always
        passed whole, as a passed config replaces all of the op's defaults."""
        return build_compute_kernel_config(self.ttnn, self.card.arch, self.run_config.kernel_config(op, self.card.arch))

    def _orientation(self):
        return self.ttnn.ShardOrientation.COL_MAJOR if self.plan.orientation == COL_MAJOR else self.ttnn.ShardOrientation.ROW_MAJOR

    # ------------------------------------------------------------------ inputs

    def _token_ids(self, t):
        """[B, S] token ids (or types) as a host uint32 tensor, split over the chips."""
        ttnn = self.ttnn
        return ttnn.from_torch(t.to(torch.int32).contiguous(), dtype=ttnn.uint32, layout=ttnn.ROW_MAJOR_LAYOUT,
                               mesh_mapper=self.chips.input_mapper())

    def _additive_mask(self, attention_mask):
        """The 1/0 padding mask as the host additive mask the softmax reads, in the plan's mask shape. The sharded
        softmax reads it row-major, 32 keys per row (as the seed)."""
        ttnn = self.ttnn
        additive = ((1.0 - attention_mask.float()) * MASK_VALUE).reshape(attention_mask.shape[0], *self.plan.mask_shape[1:])
        dtype, layout = (ttnn.bfloat16, ttnn.ROW_MAJOR_LAYOUT) if self.plan.sharded else (self._dtype("attention_mask"), ttnn.TILE_LAYOUT)
        return ttnn.from_torch(additive, dtype=dtype, layout=layout, mesh_mapper=self.chips.input_mapper())

    def _host_inputs(self, input_ids, token_type_ids, attention_mask) -> tuple:
        """Token ids, token types and the additive mask as host tensors, ready for the trace's staging buffers."""
        return self._token_ids(input_ids), self._token_ids(token_type_ids), self._additive_mask(attention_mask)

    def _on_device(self, t, to_host):
        """A model input on the chips, in L1: a host one is converted (`to_host`) and uploaded here (and freed by
        the op after its use); the trace's inputs are there already."""
        if isinstance(t, torch.Tensor):
            return self.chips.upload(to_host(t), self.ttnn.L1_MEMORY_CONFIG)
        return t

    def _position_ids(self, batch: int, seq: int):
        """[B, S] position ids, uploaded once per input shape and kept on the device."""
        key = (batch, seq)
        if key not in self._positions:
            self._positions[key] = self._on_device(torch.arange(seq).expand(batch, seq), self._token_ids)
        return self._positions[key]

    # ------------------------------------------------------------------ the ops

    def embeddings(self, input_ids, token_type_ids, p):
        ttnn = self.ttnn
        batch, seq = self.plan.batch, self.plan.shape.seq  # per chip: what each chip's tensors hold
        ids, types = self._on_device(input_ids, self._token_ids), self._on_device(token_type_ids, self._token_ids)
        positions = self._position_ids(batch * self.chips.count, seq)
        words = ttnn.embedding(ids, p.word_embeddings.weight, padding_idx=self.shape.pad_token_id, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.PADDED, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        kinds = ttnn.embedding(types, p.token_type_embeddings.weight, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.BINARY, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        where = ttnn.embedding(positions, p.position_embeddings.weight, layout=ttnn.TILE_LAYOUT,
                               embeddings_type=ttnn.EmbeddingsType.GENERIC, dtype=ttnn.bfloat16, memory_config=ttnn.L1_MEMORY_CONFIG)
        for uploaded, given in ((ids, input_ids), (types, token_type_ids)):
            if uploaded is not given:
                ttnn.deallocate(uploaded)
        summed = ttnn.add(words, kinds, memory_config=ttnn.L1_MEMORY_CONFIG)
        ttnn.deallocate(words)
        ttnn.deallocate(kinds)
        # The layer input's dtype and place: a bfloat16 one interleaved is written there by the layernorm itself.
        dtype, layer_input = self.run_config.dtype_of(OPS["embeddings"].output), self._memory(LAYER_INPUT)
        in_place = not self.plan.sharded and dtype == BFLOAT16
        # The position add rides in the layernorm (as the seed's embeddings): one op and one bf16 rounding fewer.
        normed = ttnn.layer_norm(summed, residual_input_tensor=where, epsilon=self.shape.layer_norm_eps, weight=p.LayerNorm.weight,
                                 bias=p.LayerNorm.bias, memory_config=layer_input if in_place else ttnn.L1_MEMORY_CONFIG,
                                 compute_kernel_config=self._compute("embeddings"))
        ttnn.deallocate(summed)
        ttnn.deallocate(where)
        x = ttnn.reshape(normed, (batch, 1, seq, self.shape.hidden_size))  # a view of `normed`
        if in_place:
            return x
        if self.plan.sharded:
            out = ttnn.interleaved_to_sharded(x, layer_input, getattr(ttnn, dtype))
        else:
            out = ttnn.typecast(x, getattr(ttnn, dtype), memory_config=layer_input)
        ttnn.deallocate(x)
        return out

    def attention_mask(self, attention_mask):
        return self._on_device(attention_mask, self._additive_mask)

    def _linear(self, op: str, x, p):
        return self.ttnn.linear(x, p.weight, bias=p.bias, program_config=self._program(op), memory_config=self._memory(op),
                                dtype=self._output_dtype(op), compute_kernel_config=self._compute(op))

    def qkv(self, x, p):
        return self._linear("qkv", x, p)

    def split_heads(self, qkv, num_heads):
        ttnn = self.ttnn
        if self.plan.sharded:  # per core: its own heads' q, k, v (weights interleaved in plan.groups)
            q, k_t, v = ttnn.experimental.split_query_key_value_and_split_heads(
                qkv, compute_with_storage_grid_size=ttnn.CoreCoord(*self.plan.grid),
                memory_config=self._memory("split_heads"), num_heads=num_heads,
            )
        else:  # this one takes [B, S, 3H] only (rank 3); the reshape is a view
            shape = qkv.padded_shape
            fused = ttnn.reshape(qkv, (shape[0], shape[2], shape[3]))
            q, k_t, v = ttnn.transformer.split_query_key_value_and_split_heads(
                fused, num_heads=num_heads, transpose_key=True, memory_config=self._memory("split_heads"),
            )
        return q, k_t, v

    def q_kt(self, q, k_t):
        return self.ttnn.matmul(q, k_t, program_config=self._program("q_kt"), memory_config=self._memory("q_kt"),
                                dtype=self._output_dtype("q_kt"), compute_kernel_config=self._compute("q_kt"))

    def softmax(self, scores, mask, scale):
        ttnn = self.ttnn
        shape = scores.padded_shape
        folded = ttnn.reshape(scores, (shape[0], 1, shape[1] * shape[2], shape[3]))  # [B, 1, N*S, S], as the seed
        probs = ttnn.scale_mask_softmax_in_place(
            folded, scale, mask, program_config=self._program("softmax", "SoftmaxDefaultProgramConfig"),
            compute_kernel_config=self._compute("softmax"),
        )
        return ttnn.reshape(probs, tuple(shape))

    def attention_v(self, probs, v):
        return self.ttnn.matmul(probs, v, program_config=self._program("attention_v"), memory_config=self._memory("attention_v"),
                                dtype=self._output_dtype("attention_v"), compute_kernel_config=self._compute("attention_v"))

    def concat_heads(self, context):
        return self.ttnn.experimental.nlp_concat_heads(context, memory_config=self._memory("concat_heads"))

    def self_output(self, x, p):
        return self._linear("self_output", x, p)

    def _add_layernorm(self, op: str, x, residual, p, eps):
        """layernorm(x + residual). The sharded program needs x (its `residual_input_tensor`) in the memory config of
        `residual` (its input, written over in place): the plan places both alike; a copy where they still differ."""
        ttnn = self.ttnn
        matched = x
        if self.plan.sharded and x.memory_config() != residual.memory_config():
            matched = ttnn.to_memory_config(x, memory_config=residual.memory_config())
        out = ttnn.layer_norm(
            residual, residual_input_tensor=matched, epsilon=eps, weight=p.weight, bias=p.bias,
            program_config=self._program(op, "LayerNormDefaultProgramConfig"), memory_config=self._memory(op),
            compute_kernel_config=self._compute(op),
        )
        if matched is not x:
            ttnn.deallocate(matched)
        if not self.plan.sharded:  # the interleaved program writes a new tensor: the residual's last use was here
            self.release(residual)
        return out

    def attention_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm("attention_add_layernorm", x, residual, p, eps)

    def ffn_add_layernorm(self, x, residual, p, eps):
        return self._add_layernorm("ffn_add_layernorm", x, residual, p, eps)

    def ff1_gelu(self, x, p):
        return self._linear("ff1_gelu", x, p)

    def ff2(self, x, p):
        return self._linear("ff2", x, p)

    def qa_head(self, x, p):
        ttnn = self.ttnn
        interleaved = ttnn.sharded_to_interleaved(x, ttnn.L1_MEMORY_CONFIG, self._dtype("qa_head_weights")) if self.plan.sharded else x
        logits = ttnn.linear(interleaved, p.weight, bias=p.bias, memory_config=ttnn.L1_MEMORY_CONFIG,
                             compute_kernel_config=self._compute("qa_head"))
        if interleaved is not x:
            ttnn.deallocate(interleaved)
        if self._capturing:  # the trace writes the logits; the traced forward reads them after each execution
            self._captured = logits
            return None, None
        host = self.chips.finish_read(self.chips.start_read(logits))
        ttnn.deallocate(logits)
        logits = host.float().reshape(self.plan.batch * self.chips.count, self.plan.shape.seq, -1)
        return logits[..., 0], logits[..., 1]
