"""Two fixes to megatron-core 0.16's distributed optimizer with the plain torch AdamW (no Apex / TE:
every CPU run, and GPU runs without the ``gpu`` extra). Both only matter when loading a checkpoint.

1. ``DistributedOptimizer.load_state_dict`` gives every parameter's state the *same* ``step`` tensor;
   torch's AdamW increments ``state["step"]`` in place once per parameter, so after a resume the
   shared counter runs N parameters times too fast and the bias correction is wrong (the loss log
   of a resumed run drifts from the uninterrupted one from the second step after the resume). We give
   each parameter its own copy after loading.
2. With the plain torch AdamW (no Apex / Transformer Engine: every CPU run, and GPU runs without the
``gpu`` extra), ``DistributedOptimizer.load_state_dict`` puts the torch ``step`` into each parameter's
state, and the "fully_reshardable" checkpoint loader then copies *every* state key from the checkpoint
tensors, which never hold ``step`` (it is saved per param group): ``KeyError: 'step'``. The
"dp_reshardable" loader is worse: its per-parameter ``step`` is a non-persistent placeholder (the
loading optimizer's own value), so megatron's copy silently rewinds every parameter's Adam step to it
and the bias correction of a resumed run is wrong. We copy every state key but ``step`` (and ignore the
bookkeeping such as ``padding`` that the records also carry), leaving ``step`` to the param-group path
that restores it.
"""

from __future__ import annotations

import torch

_APPLIED = False


def apply() -> None:
    global _APPLIED
    if _APPLIED:
        return
    from megatron.core.optimizer import distrib_optimizer

    cls = distrib_optimizer.DistributedOptimizer
    original = cls._set_main_param_and_optimizer_states

    @torch.no_grad()  # the fp32 main parameters are views of leaf parameters that require grad
    def set_states(self, model_param, tensors):
        if self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            return original(self, model_param, tensors)
        group_index, group_order = self.model_param_group_index_map[model_param]
        main_param = self.optimizer.param_groups[group_index]["params"][group_order]
        destination = {"param": main_param, **self.optimizer.state[main_param]}
        for key, target in destination.items():
            if key == "step":
                continue  # restored from the param groups; the per-parameter records never hold it
            if key not in tensors:
                raise KeyError(f"optimizer checkpoint has no {key!r} for a parameter (it has {sorted(tensors)})")
            target.copy_(tensors[key])

    cls._set_main_param_and_optimizer_states = set_states

    original_load = cls.load_state_dict

    def load_state_dict(self, state_dict):
        original_load(self, state_dict)
        inner = getattr(self.optimizer, "state", {})
        for param_state in inner.values():
            if isinstance(param_state.get("step"), torch.Tensor):
                param_state["step"] = param_state["step"].clone()

    cls.load_state_dict = load_state_dict
    _APPLIED = True
