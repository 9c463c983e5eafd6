"""Sibling projections in one matrix product while training (issue 26): an attention's q/k/v and an
MLP's gate/up read the same input, so one product with their weights stacked gives all of them.

The modules, their parameters and the saved model stay as they are: the first projection of a
group (q_proj, gate_proj) computes the stacked product and hands each sibling its slice when the
sibling is called on the same input tensor; called on any other input, a sibling computes its own
product. The stacked weight is built on every forward from the current weights (in the autocast
dtype when autocast is on), so optimizer steps show at once, and the backward pass gives each
weight its own gradient. Only plain bias-free-or-all-biased nn.Linear groups are fused: LoRA
layers and DeepSpeed ZeRO-3's partitioned weights keep their own modules.
"""
from __future__ import annotations

from typing import Any

# (leader, siblings...) by attribute name on one module: the order the model's forward calls them
GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _Group:
    """One group's stacked product, held from the leader's call until each sibling took its slice."""

    def __init__(self, linears: list[Any]):
        self.linears = linears
        self.sizes = [m.out_features for m in linears]
        self.input = None
        self.outputs: list[Any] = []

    def _stacked(self, x):
        import torch

        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        # cast each weight first (the autocast dtype): the stack is then built in the smaller dtype
        weight = torch.cat([m.weight if dtype is None else m.weight.to(dtype) for m in self.linears])
        if self.linears[0].bias is None:
            return weight, None
        return weight, torch.cat([m.bias if dtype is None else m.bias.to(dtype) for m in self.linears])

    def lead(self, x):
        import torch.nn.functional as F

        weight, bias = self._stacked(x)
        outputs = F.linear(x, weight, bias).split(self.sizes, dim=-1)
        self.input, self.outputs = x, [None, *outputs[1:]]
        return outputs[0]

    def follow(self, i: int, x):
        import torch.nn.functional as F

        if self.input is x and self.outputs[i] is not None:
            out, self.outputs[i] = self.outputs[i], None
            if not any(o is not None for o in self.outputs):
                self.input = None  # every slice taken: hold nothing past this layer
            return out
        m = self.linears[i]
        return F.linear(x, m.weight, m.bias)


def _fusable(linears: list[Any]) -> bool:
    import torch

    if not all(type(m) is torch.nn.Linear for m in linears):
        return False  # LoRA wrappers and other layers compute more than x @ W.T
    if any(hasattr(m.weight, "ds_id") for m in linears):
        return False  # DeepSpeed ZeRO-3 gathers a partitioned weight only inside the module call
    first = linears[0]
    return (all(m.in_features == first.in_features and m.weight.dtype == first.weight.dtype
                and m.weight.device == first.weight.device for m in linears)
            and len({m.bias is None for m in linears}) == 1)


def fuse_projections(model) -> int:
    """Route each q/k/v and gate/up group of `model` through one stacked product (module
    docstring). Returns the number of groups fused (0: nothing to fuse, the model is unchanged)."""
    n = 0
    for module in model.modules():
        for names in GROUPS:
            linears = [getattr(module, name, None) for name in names]
            if any(m is None for m in linears) or not _fusable(linears):
                continue
            group = _Group(linears)
            linears[0].forward = group.lead
            for i, m in enumerate(linears[1:], start=1):
                m.forward = lambda x, _i=i, _g=group: _g.follow(_i, x)
            n += 1
    return n
