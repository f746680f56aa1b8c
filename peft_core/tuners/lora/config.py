"""LoraConfig: the schema of LoRA and its variants (DoRA, rsLoRA, PiSSA/OLoRA/orthogonal inits)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...config import AdapterConfig, option
from ...matching import name_matches
from ...patterns import pattern_problems, pattern_value
from ...shapes import token_row_width
from ...types import PeftType
from ..trainable_tokens import token_index_problems

if TYPE_CHECKING:
    from ...shapes import ModelShape, ModuleShape

INIT_CHOICES = (True, False, "gaussian", "pissa", "olora", "orthogonal", "loftq")
_PISSA_FAST = re.compile(r"pissa_niter_(\d+)")


@dataclass
class LoraConfig(AdapterConfig):
    """LoRA: add scaling * B @ A (rank r) to each targeted weight; B starts at zero."""

    peft_type: ClassVar[PeftType] = PeftType.LORA
    peft_compat_fields: ClassVar[dict[str, Any]] = {
        "auto_mapping": None,
        "megatron_config": None,
        "megatron_core": "megatron.core",
        "eva_config": None,
        "corda_config": None,
        "lora_ga_config": None,
        "velora_config": None,
        "alora_invocation_tokens": None,
        "use_qalora": False,
        "qalora_group_size": 16,
        "monteclora_config": None,
        "layer_replication": None,
        "use_bdlora": None,
        "arrow_config": None,
        "kasa_config": None,
        "ensure_weight_tying": False,
    }

    r: int = option(8, help="Rank of the update: higher learns more and costs more memory.", gt=0)
    lora_alpha: int | float = option(8, help="Scale of the update: scaling = lora_alpha / r.", gt=0)
    lora_dropout: float = option(0.0, help="Dropout on the adapter's input during training.", ge=0.0, le=0.999)
    use_rslora: bool = option(False, help="Rank-stabilised scaling lora_alpha / sqrt(r) (better at high ranks).", advanced=True)
    use_dora: bool = option(False, help="DoRA: learn magnitude and direction separately (slower, often better).")
    init_lora_weights: bool | str = option(
        True,
        help="Initialisation: true (B=0), 'gaussian', false (random, for tests), 'pissa', 'pissa_niter_K', 'olora', 'orthogonal'.",
        advanced=True,
    )
    loftq_config: dict[str, int] = option(
        factory=dict, help="LoftQ settings for init_lora_weights='loftq': {'loftq_bits': 4 or 8, 'loftq_iter': rounds}.", advanced=True
    )
    bias: str = option("none", help="Which biases to train: none, all, or lora_only.", choices=("none", "all", "lora_only"), advanced=True)
    lora_bias: bool = option(False, help="Give the B matrix a trainable bias.", advanced=True)
    fan_in_fan_out: bool = option(False, help="Weights stored as (in, out), as in GPT-2's Conv1D (detected automatically).", advanced=True)
    rank_pattern: dict[str, int] = option(factory=dict, help="Per-module rank overrides: {regex or name: r}.", advanced=True)
    alpha_pattern: dict[str, int | float] = option(factory=dict, help="Per-module alpha overrides: {regex or name: alpha}.", advanced=True)
    trainable_token_indices: list[int] | dict[str, list[int]] | None = option(
        None,
        help="Also train these token rows: a list for the input embedding, or {module name: token ids}.",
        advanced=True,
    )
    target_parameters: list[str] | None = option(
        None, help="Adapt raw parameters (e.g. MoE expert tensors 'experts.gate_up_proj') instead of modules.", advanced=True
    )

    def extra_checks(self) -> list[str]:
        problems = super().extra_checks()
        init = self.init_lora_weights
        if init not in INIT_CHOICES and not (isinstance(init, str) and _PISSA_FAST.fullmatch(init)):
            allowed = ", ".join(repr(c) for c in INIT_CHOICES)
            problems.append(f"init_lora_weights: unknown initialisation {init!r}; use one of {allowed} or 'pissa_niter_K'")
        problems.extend(_loftq_problems(init, self.loftq_config))
        if self.use_dora and self.lora_bias:
            problems.append("lora_bias: cannot be combined with use_dora; turn one of them off")
        if init == "orthogonal":
            odd = [r for r in [self.r, *self.rank_pattern.values()] if r % 2]
            if odd:
                problems.append(f"init_lora_weights: 'orthogonal' needs an even rank, got r={odd[0]}")
        problems.extend(pattern_problems(self.rank_pattern, self.alpha_pattern))
        if self.target_parameters is not None and isinstance(self.target_parameters, str):
            problems.append("target_parameters: must be a list of parameter names, not a regex")
        problems += self._token_problems() + self._parameter_problems()
        return problems

    def _token_problems(self) -> list[str]:
        spec = self.trainable_token_indices
        if isinstance(spec, list):
            return token_index_problems("trainable_token_indices", spec)
        if isinstance(spec, dict):
            if not spec:
                return ["trainable_token_indices: the dict is empty; map a module name to token ids, e.g. {'embed_tokens': [0, 1]}"]
            return [p for key, ids in spec.items() for p in token_index_problems(f"trainable_token_indices[{key!r}]", ids)]
        return []

    def _parameter_problems(self) -> list[str]:
        """What a LoRA on a raw parameter cannot do (as in peft's ParamWrapper), with the fix for each."""
        if not self.target_parameters or isinstance(self.target_parameters, str):
            return []
        problems = []
        if self.lora_dropout:
            problems.append("lora_dropout: must be 0 with target_parameters (a parameter has no input to drop out); set lora_dropout=0")
        if self.use_dora:
            problems.append("use_dora: DoRA cannot adapt target_parameters; set use_dora=False or adapt modules instead")
        if self.lora_bias:
            problems.append("lora_bias: target_parameters have no bias to train; set lora_bias=False")
        if self.fan_in_fan_out:
            problems.append("fan_in_fan_out: not used with target_parameters (the layout is read from the model); set it to False")
        if self.init_lora_weights not in (True, False, "gaussian"):
            problems.append(
                f"init_lora_weights: {self.init_lora_weights!r} cannot initialise target_parameters; use True, False or 'gaussian'"
            )
        return problems

    def __post_init__(self) -> None:
        if self.target_parameters and self.target_modules is None:
            self.target_modules = []  # as in peft: parameters only, no default module targets
        super().__post_init__()

    def _allows_empty_targets(self) -> bool:
        return bool(self.target_parameters)

    # ------------------------------------------------------------------ trainable-parameter count (torch-free)

    def trainable_parameter_count(self, shape: ModelShape) -> int | None:
        """Adapted modules, raw parameters (target_parameters) and trainable token rows."""
        if self.peft_type is not PeftType.LORA:
            return None  # a method built on this config (AdaLoRA) has tensors of its own: it counts them itself
        count = super().trainable_parameter_count(shape)
        if count is not None and self.target_parameters:
            wrapped = self._parameter_count(shape)
            count = None if wrapped is None else count + wrapped
        if count is None or not self.trainable_token_indices:
            return count
        if isinstance(self.trainable_token_indices, list):
            if shape.input_embedding is None:
                return None
            spec = {shape.input_embedding: self.trainable_token_indices}
        else:
            spec = self.trainable_token_indices
        for key, ids in spec.items():
            matched = [m for m in shape.modules if name_matches(m.name, [key])]
            rows = [token_row_width(m) for m in matched]
            if not matched or None in rows:
                return None
            count += sum(len(ids) * width for width in rows)  # type: ignore[misc]  (a tied head shares the rows)
        return count

    def _parameter_count(self, shape: ModelShape) -> int | None:
        """LoRA on raw parameters: per (E, out, in) tensor A (r*E, in) and B (out, r*E); None if an entry matches nothing."""
        count, used = 0, set()
        for module in shape.modules:
            for pname, dims in module.parameters:
                full = f"{module.name}.{pname}" if module.name else pname
                hits = [t for t in self.target_parameters or [] if full == t or full.endswith("." + t)]
                if not hits or len(dims) not in (2, 3):
                    continue
                used.update(hits)
                experts = dims[0] if len(dims) == 3 else 1
                fan_in, fan_out = (dims[-2], dims[-1]) if module.transposed else (dims[-1], dims[-2])
                count += pattern_value(self.rank_pattern, full, self.r) * experts * (fan_in + fan_out)
        return count if used == set(self.target_parameters or []) else None

    def module_parameter_count(self, module: ModuleShape, shape: ModelShape) -> int | None:
        """A: r x in (x kernel), B: out x r, plus lora_bias (out) and DoRA's magnitude (one per output)."""
        r = pattern_value(self.rank_pattern, module.name, self.r)
        if module.kind == "linear" or module.kind == "embedding":
            count = r * (module.in_features + module.out_features)
        elif module.kind == "conv" and module.groups == 1:
            count = r * module.in_features * module.kernel_numel + r * module.out_features
        else:
            return None
        if self.lora_bias:
            if module.kind == "embedding":
                return None
            count += module.out_features
        return count + (module.out_features if self.use_dora else 0)


def _loftq_problems(init: Any, loftq: dict[str, int]) -> list[str]:
    if init != "loftq":
        return [] if not loftq else ["loftq_config: only used with init_lora_weights='loftq'; remove it or set that init"]
    problems = [f"loftq_config: unknown key {k!r} (use loftq_bits, loftq_iter)" for k in loftq if k not in ("loftq_bits", "loftq_iter")]
    if loftq.get("loftq_bits", 4) not in (4, 8):
        problems.append(f"loftq_config: loftq_bits must be 4 or 8, got {loftq.get('loftq_bits')!r}")
    if not isinstance(loftq.get("loftq_iter", 1), int) or loftq.get("loftq_iter", 1) < 1:
        problems.append(f"loftq_config: loftq_iter must be a whole number >= 1, got {loftq.get('loftq_iter')!r}")
    return problems
