"""The tensors a compiled decode step reads, and a pool that keeps them at fixed addresses.

CUDA graphs replay kernels on fixed memory. Inductor's graphs replay a step only if every tensor
input it reads or updates is a parameter, a buffer or marked static; an input at a new address is
copied into the graph's memory on every replay, and a mutated one makes it skip graphs ("mutated
inputs"). `step_tensors` names every tensor of a DecodeState that the step reads (the decode state,
the schedule's constants, the KV cache, the placeholder's embedding); `mark_static` marks them
(unguarded: a new address re-records the graph, never recompiles).

A decode allocates its state afresh, so each decode would re-record. `StepBuffers` is the opt-in
cure: an object the caller holds (one per decode shape it runs; nothing global, nothing on a module)
that keeps the first decode's tensors and, for every later decode of the same shape, copies the new
state's values into them and points the state at them. The second decode then reads the same
addresses as the first: no new recording and no new compilation.
"""
import dataclasses

import torch


def step_tensors(state) -> dict:
    """name -> (owner, attribute or list index) of every tensor the decode step reads (None entries and
    non-tensors left out). Owners: the DecodeState and its dataclasses, the scheduler, its slot map and
    placeholder, the KV cache's per-layer lists."""
    slots = {}
    parts = {"": state, "schedule.": state.schedule, "condition.": state.condition}
    if state.row_drafts is not None:
        parts["row_drafts."] = state.row_drafts
    if state.tree_drafts is not None:  # a candidate tree's state and geometry (common.zipar.tree_drafts)
        parts["tree_drafts."] = state.tree_drafts
        parts["scheduler.tree_nodes."] = state.scheduler.tree_nodes
    for prefix, part in parts.items():
        for f in dataclasses.fields(part):
            slots[prefix + f.name] = (part, f.name)
    slot_map = state.scheduler.slot_map
    for f in dataclasses.fields(slot_map):
        slots["scheduler.slot_map." + f.name] = (slot_map, f.name)
    slots["scheduler.rows"] = (state.scheduler, "rows")
    slots["scheduler.placeholder.mean_input"] = (state.scheduler.placeholder, "mean_input")
    for i in range(len(state.cache.keys)):
        slots[f"cache.keys.{i}"] = (state.cache.keys, i)
        slots[f"cache.values.{i}"] = (state.cache.values, i)
    return {name: where for name, where in slots.items() if isinstance(_get(where), torch.Tensor)}


def _get(where):
    owner, key = where
    return owner[key] if isinstance(owner, list) else getattr(owner, key)


def _set(where, value) -> None:
    owner, key = where
    if isinstance(owner, list):
        owner[key] = value
    else:  # frozen dataclasses (SlotMap, Condition) included: the same value at another address
        object.__setattr__(owner, key, value)


def mark_static(state) -> None:
    """Mark every step tensor static for dynamo, without a guard (see the module docstring)."""
    for where in step_tensors(state).values():
        torch._dynamo.mark_static_address(_get(where), guard=False)


class StepBuffers:
    """Step tensors kept across decodes of one shape (see the module docstring). `adopt(state)` after the
    prefix pass: the first decode's tensors are kept; a later decode's are copied into them."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def adopt(self, state) -> None:
        slots = step_tensors(state)
        if self.tensors and not self._fits(slots):
            raise ValueError("these step buffers hold a decode of another shape; keep one StepBuffers per shape")
        for name, where in slots.items():
            t = _get(where)
            if name not in self.tensors:
                self.tensors[name] = t
            elif self.tensors[name] is not t:
                self.tensors[name].copy_(t)
                _set(where, self.tensors[name])

    def _fits(self, slots: dict) -> bool:
        if set(slots) != set(self.tensors):
            return False
        return all(tuple(_get(w).shape) == tuple(self.tensors[n].shape) and _get(w).dtype == self.tensors[n].dtype
                   and _get(w).device == self.tensors[n].device for n, w in slots.items())
