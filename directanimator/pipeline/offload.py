"""Model CPU offload through accelerate's hooks (`inference.memory = model_offload`)."""

from __future__ import annotations

import torch


class ModelOffload:
    """Model CPU offload (diffusers' `enable_model_cpu_offload`) through accelerate hooks: the models
    start in CPU memory; before one runs (its forward, or the VAE's encode/decode, which diffusers'
    `apply_forward_hook` routes through the hook) the model on the device goes back to CPU memory and
    this one comes to the device. Unlike accelerate's chained `cpu_offload_with_hook`, the order of use
    does not matter: the pipeline alternates transformer and VAE window by window. `log` records every
    move as ("offload" | "onload", index in `models`)."""

    def __init__(self, models: list[torch.nn.Module], device: torch.device):
        from accelerate.hooks import ModelHook, add_hook_to_module
        from accelerate.utils import send_to_device

        self.models, self.device = list(models), torch.device(device)
        self.current: torch.nn.Module | None = None
        self.log: list[tuple[str, int]] = []
        owner = self

        class Hook(ModelHook):
            def pre_forward(self, module, *args, **kwargs):
                owner.bring(module)
                return send_to_device(args, owner.device), send_to_device(kwargs, owner.device)

        for m in self.models:
            m.to("cpu")
            add_hook_to_module(m, Hook())

    def bring(self, module: torch.nn.Module) -> None:
        if self.current is module:
            return
        if self.current is not None:
            self.current.to("cpu")
            self.log.append(("offload", self._index(self.current)))
        module.to(self.device)
        self.current = module
        self.log.append(("onload", self._index(module)))

    def _index(self, module: torch.nn.Module) -> int:
        return next(i for i, m in enumerate(self.models) if m is module)
