"""What a training run updates (`train.trainable`), and the adapter files of the partial modes.

    full      every weight (the default)
    lora      LoRA adapters (peft, through diffusers' `add_adapter`) on the backbone's attention
              projections, plus the cue modules trained fully: the backbone stays frozen
    cue_only  only the cue modules: the backbone stays frozen

The cue modules are the weights that read the driving cues: `cue_embed` (pose/face cue patch
embeddings), `cue_fusion` (eqs 1-3 in every block), `cue_cross_attention` (the CA baseline), and,
for the `concat` injection, whose cues enter through the widened input, `patch_embed`.

A partial run's checkpoints hold the backbone's own (plain, unmerged) weights in `model/`, loadable
like any model folder, and its trained part on its own in `adapter/`:

    adapter/adapter.safetensors   LoRA A/B matrices (peft's names, no adapter name) and the cue
                                  modules' weights (prefixed `cue.`)
    adapter/adapter.json          mode, rank, alpha, target modules

`load_transformer` applies a sibling `adapter/` folder, merged into the weights (the default: as fast
as the plain model) or as live LoRA layers. Inference code: imports nothing from training.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER_DIR = "adapter"
CUE_PREFIXES = ("cue_embed.", "cue_fusion.", "cue_cross_attention.")


from ..config import LoraConfig as LoraSettings  # train.lora


def cue_prefixes(model) -> tuple[str, ...]:
    concat = model.config.get("injection", "cuefusion") == "concat"
    return CUE_PREFIXES + (("patch_embed.",) if concat else ())


def is_cue_param(model, name: str) -> bool:
    return name.startswith(cue_prefixes(model))


def has_lora(model) -> bool:
    return any("lora_A" in name for name, _ in model.named_parameters())


def set_trainable(model, mode: str, lora: LoraSettings | None = None) -> int:
    """Freeze / unfreeze for `mode` (adding the LoRA layers for `lora`); returns the number of
    trainable parameters."""
    if mode == "full":
        model.requires_grad_(True)
    elif mode in ("lora", "cue_only"):
        model.requires_grad_(False)
        if mode == "lora" and not has_lora(model):
            from peft import LoraConfig

            lora = lora or LoraSettings()
            model.add_adapter(LoraConfig(r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.target_modules),
                                         lora_dropout=lora.dropout, init_lora_weights=True))
        for name, p in model.named_parameters():
            if is_cue_param(model, name) or (mode == "lora" and "lora_" in name):
                p.requires_grad_(True)
    else:
        raise ValueError(f"train.trainable must be full, lora or cue_only, got {mode!r}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def expected_trainable(model, mode: str, lora: LoraSettings | None = None) -> int:
    """The trainable parameter count `mode` must give, from the config (for checks): cue modules,
    plus rank x (in + out) per targeted Linear for LoRA."""
    if mode == "full":
        return sum(p.numel() for p in model.parameters())
    count = sum(p.numel() for n, p in _plain_named_parameters(model) if is_cue_param(model, n))
    if mode == "lora":
        lora = lora or LoraSettings()
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and not is_cue_param(model, name) and ".lora_" not in name \
                    and "base_layer" not in name and any(name == t or name.endswith("." + t) for t in lora.target_modules):
                count += lora.rank * (module.in_features + module.out_features)
            elif hasattr(module, "base_layer") and any(name.endswith("." + t) for t in lora.target_modules):
                base = module.base_layer
                count += lora.rank * (base.in_features + base.out_features)
    return count


def _plain_named_parameters(model):
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        yield name.replace(".base_layer.", "."), p


def plain_state_dict(model, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The backbone's weights under their plain names (LoRA layers left out, not merged); `state`: the
    model's state dict gathered elsewhere (a sharded run's), instead of `model.state_dict()`."""
    state = model.state_dict() if state is None else state
    return {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}


def load_plain_state_dict(model, weights: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """`plain_state_dict`'s inverse on a model that may carry LoRA layers; (missing, unexpected)."""
    own = model.state_dict()
    mapped = {}
    for key, value in weights.items():
        if key in own:
            mapped[key] = value
            continue
        parts = key.rsplit(".", 1)
        alt = f"{parts[0]}.base_layer.{parts[1]}" if len(parts) == 2 else key
        mapped[alt if alt in own else key] = value
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    return [k for k in missing if "lora_" not in k], list(unexpected)


def save_adapter(model, folder: str | Path, mode: str, lora: LoraSettings | None = None,
                 state: dict[str, torch.Tensor] | None = None) -> Path:
    """adapter.safetensors + adapter.json of a `lora` or `cue_only` model (see the module docstring);
    `state` as in plain_state_dict."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"cue.{k}": v for k, v in plain_state_dict(model, state).items() if is_cue_param(model, k)}
    meta: dict = {"mode": mode}
    if mode == "lora":
        from peft.utils import get_peft_model_state_dict

        lora = lora or LoraSettings()
        tensors.update({f"lora.{k}": v for k, v in get_peft_model_state_dict(model, state_dict=state).items()})
        meta.update(rank=lora.rank, alpha=lora.alpha, target_modules=list(lora.target_modules))
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / "adapter.safetensors"))
    (folder / "adapter.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_adapter(model, folder: str | Path, merge: bool = True) -> str:
    """Apply an adapter folder to a model loaded from the run's plain `model/` weights: the cue
    modules' weights, and for LoRA the adapters, merged into the backbone's weights when `merge`.
    Returns the adapter's mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "adapter.json").read_text())
    tensors = load_file(str(folder / "adapter.safetensors"))
    cue = {k[len("cue."):]: v for k, v in tensors.items() if k.startswith("cue.")}
    missing, unexpected = load_plain_state_dict(model, cue)
    if unexpected:
        raise ValueError(f"adapter {folder} does not fit this model: unexpected {unexpected[:2]}")
    if meta["mode"] == "lora":
        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict

        if not has_lora(model):
            model.add_adapter(LoraConfig(r=meta["rank"], lora_alpha=meta["alpha"],
                                         target_modules=meta["target_modules"], init_lora_weights=True))
        lora = {k[len("lora."):]: v for k, v in tensors.items() if k.startswith("lora.")}
        result = set_peft_model_state_dict(model, lora)
        bad = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
        if bad:
            raise ValueError(f"adapter {folder} does not fit this model: unexpected {bad[:2]}")
        if merge:
            merge_lora(model)
    return meta["mode"]


def merge_lora(model) -> None:
    """Fold every LoRA layer into its base weight and put the plain Linear back."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    model._hf_peft_config_loaded = False
