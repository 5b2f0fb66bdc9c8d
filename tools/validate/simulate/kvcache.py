"""The KV cache one vLLM pod holds, from the model's geometry and the GPU's memory, and what happens
when the running sequences need more than that.

vLLM allocates `--gpu-memory-utilization` of the GPU's memory; after the weights and the runtime's own
use (activations, CUDA graphs) the rest becomes KV blocks. A sequence holds its prompt plus the tokens
generated so far, so at the workload's lengths a running sequence holds on average
`prompt + output / 2` tokens and, at the end, `prompt + output`. When the running sequences need more
blocks than exist, vLLM's scheduler preempts the newest ones (recompute mode, its V1 default): they go
back to the waiting queue and their prefill (prompt plus what they had generated) is computed again.

Model (fluid, per pod):
- the running batch is capped at the sequences the cache holds at mean occupancy
  (`budget / (prompt + output / 2)`) as well as at `--max-num-seqs`;
- above `budget / (prompt + output)` running sequences, the share of the batch that cannot all reach
  its last token is preempted once, each paying a recomputation of `prompt + output / 2` tokens at the
  profile's prefill rate.
The model's geometry comes from the gate's catalogue (tools/validate/data/models.yaml), the GPU's
memory from its gpus.yaml, as the gate's gpu rules read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tools.validate.catalogue import GIB, Catalogue, ModelProfile

VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's engine default (EngineArgs.gpu_memory_utilization)


@dataclass(frozen=True)
class KvBudget:
    """KV tokens one pod holds and the sequence lengths of the workload."""

    tokens: float
    prompt_tokens: float
    output_tokens: float
    recompute_seconds_per_token: float  # prefill time per token, for a preempted sequence's recomputation

    @property
    def mean_sequence_tokens(self) -> float:
        return self.prompt_tokens + self.output_tokens / 2.0

    @property
    def full_sequence_tokens(self) -> float:
        return self.prompt_tokens + self.output_tokens

    @property
    def sequences_held(self) -> float:
        """Running sequences the cache holds at mean occupancy: the batch cannot grow past this."""
        return self.tokens / self.mean_sequence_tokens if self.mean_sequence_tokens > 0 else float("inf")

    @property
    def sequences_completed_without_preemption(self) -> float:
        return self.tokens / self.full_sequence_tokens if self.full_sequence_tokens > 0 else float("inf")

    def preempted_share(self, running: float) -> float:
        """The share of a batch of `running` sequences that is preempted (once) before it finishes."""
        safe = self.sequences_completed_without_preemption
        if running <= safe or running <= 0:
            return 0.0
        return (running - safe) / running

    @property
    def recompute_seconds(self) -> float:
        """One preemption's recomputation: the prefill of the prompt and of what had been generated."""
        return self.mean_sequence_tokens * self.recompute_seconds_per_token

    def extra_seconds(self, running: float) -> float:
        """Added to each request's time in a batch of `running`: the preempted share times a recompute."""
        return self.preempted_share(running) * self.recompute_seconds


def kv_budget_tokens(
    model: ModelProfile, gpu_memory_mib: float, utilization: float, runtime_overhead_gib: float, gpus: int = 1
) -> float:
    """KV tokens: (GPU memory x utilization - weights - runtime overhead) / bytes per token."""
    usable = gpu_memory_mib * 2**20 * utilization * max(gpus, 1)
    free = usable - model.weights_gib * GIB - runtime_overhead_gib * GIB
    return max(free, 0.0) / model.kv_cache_bytes_per_token


def budget_for(
    catalogue: Catalogue,
    flags: Mapping[str, str],
    gpu_name: str,
    gpus_per_pod: int,
    prompt_tokens: float,
    output_tokens: float,
    runtime_overhead_gib: float,
    prefill_seconds: float,
) -> KvBudget | None:
    """The pod's budget, or None when the catalogue does not know the served model or the GPU."""
    model = catalogue.model_for(flags.get("--model", ""), flags.get("--served-model-name", ""))
    gpu = catalogue.gpus.get(gpu_name)
    if model is None or gpu is None:
        return None
    utilization = float(flags.get("--gpu-memory-utilization", VLLM_DEFAULT_GPU_MEMORY_UTILIZATION))
    tokens = kv_budget_tokens(model, gpu.vram_mib, utilization, runtime_overhead_gib, gpus_per_pod)
    per_token = prefill_seconds / prompt_tokens if prompt_tokens > 0 else 0.0
    return KvBudget(tokens, prompt_tokens, output_tokens, per_token)
