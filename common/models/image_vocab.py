"""The engine's view of a multimodal decoder: image codes instead of vocabulary ids.

Lumina-mGPT and Emu3 share one vocabulary between text, image and control tokens; content positions
may only sample image tokens, and end-of-row tokens are fixed, never sampled. `ImageVocabDecoder`
wraps a LlamaDecoder so the engine works in code space: index c < K is image code c (vocabulary id
image_ids[c]); indices K, K+1, ... are the fixed tokens (`fixed_code`). Logits cover the K image ids
only, computed from those lm_head rows alone (8192 of 65536 rows for Lumina, 32768 of 184622 for
Emu3), so a content position can never sample anything else. Softmax over the K image logits is the
full-vocabulary distribution conditioned on "an image token", which is what the official image-logit
masks (-inf outside the image ids) compute; CFG differences of log-softmaxes differ from differences of
these logits by a per-row constant, which sampling ignores.
"""
import torch

from common.zipar.kv_cache import KVCache
from common.models.llama import LlamaDecoder


class ImageVocabDecoder:
    """Implements common.zipar.engine.Decoder over image codes. image_ids: (K,) vocabulary id of each code;
    fixed_ids: (F,) vocabulary ids of tokens the schedule places (end-of-row ...)."""

    def __init__(self, model: LlamaDecoder, image_ids: torch.Tensor, fixed_ids: torch.Tensor):
        vocab = model.config.vocab_size
        ids = torch.cat([image_ids, fixed_ids]).long()
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"image/fixed token ids must lie in [0, {vocab}), got range [{ids.min()}, {ids.max()}]")
        if len(set(ids.tolist())) != ids.numel():
            raise ValueError("image and fixed token ids must be distinct")
        device = model.lm_head.weight.device
        self.model = model
        self.num_codes = image_ids.numel()
        self.vocab_ids = ids.to(device)  # (K + F,) code -> vocabulary id
        image_ids = image_ids.to(device)
        first = int(image_ids[0]) if image_ids.numel() else 0
        if torch.equal(image_ids, torch.arange(first, first + image_ids.numel(), device=device)):
            # contiguous ids (Emu3, Chameleon): a view, no copy of the rows (256 MB for Emu3 in bf16)
            self.image_head = model.lm_head.weight[first:first + image_ids.numel()]
        else:
            self.image_head = model.lm_head.weight[image_ids]  # (K, D): the rows content positions use

    def fixed_code(self, i: int) -> int:
        """Code-space index of fixed_ids[i]."""
        return self.num_codes + i

    def to_vocab(self, codes: torch.Tensor) -> torch.Tensor:
        return self.vocab_ids[codes]

    def new_cache(self, batch: int, num_slots: int, device) -> KVCache:
        return self.model.new_cache(batch, num_slots, device)

    def embed_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(self.vocab_ids[codes])

    def __call__(self, x, positions, slots, mask, cache) -> torch.Tensor:
        """fp32 logits (B, Q, K) over the image codes."""
        return (self.model.hidden_states(x, positions, slots, mask, cache) @ self.image_head.T).float()
