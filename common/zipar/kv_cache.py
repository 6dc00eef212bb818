"""The static KV cache and attention over it.

Preallocated per decode (zeros), written by slot index (gpt-fast's `k_cache[:, :, pos] = k`); the
engine decides slots and masks, a layer only writes its keys/values and reads the whole cache.
It is the only state a decode holds besides the engine's own DecodeState. `recorder` is None
except while common.attention_maps.record_attention runs a decode (opt-in attention-map recording).
"""
import torch
import torch.nn.functional as F


class KVCache:
    def __init__(self, num_layers: int, batch: int, num_kv_heads: int, num_slots: int, head_dim: int,
                 dtype: torch.dtype, device):
        shape = (batch, num_kv_heads, num_slots, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.recorder = None  # callable(layer, q, keys, bias, slots) while attention is recorded

    @property
    def num_slots(self) -> int:
        return self.keys[0].shape[2]


def attention_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool mask (Q, S) or (B | 1, Q, S), True = attend -> SDPA's additive mask (0 or -inf) in the
    queries' dtype, with a head axis: (1 | B, 1, Q, S). SDPA makes the same conversion of a bool mask
    itself, in every call: a model converts once per forward and shares the result across layers."""
    mask = mask if mask.dim() == 3 else mask[None]
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.full((), float("-inf"), dtype=dtype, device=mask.device))[:, None]


def cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache, layer: int,
                     slots: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Write k, v (B, Hkv, Q, D) at `slots`, then attend q (B, H, Q, D) over all cache slots.

    slots: (Q,) or (1, Q) shared by the batch, or (B, Q) per batch row.
    bias: (B | 1, 1, Q, S) additive mask (`attention_bias`). Returns (B, H, Q, D).
    """
    keys, values = cache.keys[layer], cache.values[layer]
    if slots.dim() == 1 or slots.shape[0] == 1:
        keys.index_copy_(2, slots.reshape(-1), k.to(keys.dtype))
        values.index_copy_(2, slots.reshape(-1), v.to(values.dtype))
    else:
        rows = torch.arange(slots.shape[0], device=slots.device)[:, None]
        keys[rows, :, slots] = k.transpose(1, 2).to(keys.dtype)  # (B, Q, Hkv, D) at [b, :, slots[b]]
        values[rows, :, slots] = v.transpose(1, 2).to(values.dtype)
    if cache.recorder is not None:
        cache.recorder(layer, q, keys, bias, slots)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias,
                                          enable_gqa=keys.shape[1] != q.shape[1])
