"""Caption features for LlamaGen text-to-image: flan-t5-xl encoder output, left-padded to 120 tokens.

Follows FoundationVision/LlamaGen language/t5.py (T5Embedder.get_text_embeddings) and
autoregressive/sample/sample_t2i.py (left padding):
  tokenise with max_length=120, padding='max_length', truncation=True, add_special_tokens=True (the
  EOS `</s>` counts as a valid token) -> T5 encoder `last_hidden_state` (B, 120, 2048), right-padded;
  then left padding: the mask is flipped, each caption's valid rows are rotated to the end and the
  padded rows are zeroed. The last valid token (EOS) then sits at slot 119, whose output predicts
  image token 0. Precomputed features follow language/extract_t5_feature.py: one .npy per caption
  holding its valid rows (1, n, 2048) float32; dataset/t2i.py truncates to 120 and left-pads them.

Deviation: the official embedder cleans each prompt twice with the PixArt/DeepFloyd `clean_caption`
(ftfy, bs4, ~40 regexes). We apply its no-cleaning path, `text.lower().strip()`; for plain prompts
the two agree up to punctuation spacing.

`transformers` is imported lazily, so the rest of the package never needs it.
"""
from pathlib import Path

import numpy as np
import torch

from llamagen.model import CAPTION_TOKENS

# T5Embedder(dir_or_name='flan-t5-xl', local_cache=True) reads {cache_dir}/flan-t5-xl
T5_SUBFOLDER = "flan-t5-xl"


def left_pad(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, L, C) features and (B, L) mask -> left-padded features with zeroed padding
    rows and the flipped (B, L) bool mask (sample_t2i.py: cat([emb[n:], emb[:n]]) * flip(mask))."""
    L = features.shape[1]
    valid = mask.sum(dim=1)  # (B,) tokens per caption
    rows = (torch.arange(L, device=features.device)[None] + valid[:, None]) % L  # (B, L) source row
    rotated = features.gather(1, rows[..., None].expand(-1, -1, features.shape[2]))
    new_mask = mask.flip(-1).bool()
    return rotated * new_mask[..., None].to(rotated.dtype), new_mask


def resolve_t5_path(path: str | Path) -> Path:
    """The folder holding config.json: `path` itself, or the official layout `path/flan-t5-xl`."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / T5_SUBFOLDER / "config.json").is_file():
        return path / T5_SUBFOLDER
    raise FileNotFoundError(f"--t5-path: no T5 model (config.json) in {path} or {path / T5_SUBFOLDER}")


class T5CaptionEncoder:
    """transformers' T5EncoderModel + tokenizer from a local folder (no download)."""

    def __init__(self, path: str | Path, device="cpu", dtype: torch.dtype = torch.float32,
                 max_length: int = CAPTION_TOKENS):
        from transformers import AutoTokenizer, T5EncoderModel  # lazy: only this path needs transformers

        folder = resolve_t5_path(path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.model = T5EncoderModel.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device).eval()
        self.device, self.max_length = torch.device(device), max_length

    @property
    def feature_dim(self) -> int:
        return self.model.config.d_model

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> right-padded (B, max_length, C) last_hidden_state and (B, max_length) bool mask."""
        texts = [p.lower().strip() for p in prompts]  # the official no-cleaning path (see module doc)
        batch = self.tokenizer(texts, max_length=self.max_length, padding="max_length", truncation=True,
                               return_attention_mask=True, add_special_tokens=True, return_tensors="pt")
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        features = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return features, mask.bool()


def t5_caption_features(encoder: T5CaptionEncoder, prompts: list[str], left_padding: bool = True):
    """(B, L, C) caption features and (B, L) bool mask as the sampler feeds them to the GPT."""
    features, mask = encoder.encode(prompts)
    if not left_padding:  # sample_t2i.py --no-left-padding: right-padded, padding rows zeroed too
        return features * mask[..., None].to(features.dtype), mask
    return left_pad(features, mask)


def load_caption_rows(path: str | Path) -> torch.Tensor:
    """One caption's valid feature rows, (n, C) float32, from a .npy/.pt file holding (n, C) or (1, n, C)
    finite numbers; anything else (a text or empty file, another shape) is a ValueError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--caption-features {path} is a folder; expected a .npy or .pt file")
    if not path.is_file():
        raise FileNotFoundError(f"--caption-features: file not found: {path}")
    if path.suffix not in (".npy", ".pt", ".pth"):
        raise ValueError(f"--caption-features: {path} must be .npy or .pt")
    try:
        if path.suffix == ".npy":
            rows = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            rows = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # empty, text, truncated, pickled objects: all "not a feature file"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--caption-features: cannot read {path} as a {path.suffix} array "
                         f"({path.stat().st_size} bytes): {reason}") from None
    if not isinstance(rows, torch.Tensor):
        raise ValueError(f"--caption-features: {path} must hold one tensor, got {type(rows).__name__}")
    if rows.dim() == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.dim() != 2 or rows.shape[0] == 0 or not rows.is_floating_point():
        raise ValueError(f"--caption-features: {path} holds {rows.dtype} of shape {tuple(rows.shape)}; "
                         "expected float (n, C) or (1, n, C), n >= 1")
    if not torch.isfinite(rows).all():
        raise ValueError(f"--caption-features: {path} holds non-finite values (NaN or inf)")
    return rows.float()


def pad_caption_rows(rows: list[torch.Tensor], max_length: int = CAPTION_TOKENS, left_padding: bool = True):
    """Per-caption (n_i, C) valid rows -> (B, max_length, C) features, zero padded, and (B, max_length)
    bool mask; rows past max_length are dropped (dataset/t2i.py keeps t5_feat[:, :120])."""
    dims = {r.shape[1] for r in rows}
    if len(dims) != 1:
        raise ValueError(f"caption features disagree in width: {sorted(dims)}")
    features = torch.zeros(len(rows), max_length, dims.pop())
    mask = torch.zeros(len(rows), max_length, dtype=torch.bool)
    for i, r in enumerate(rows):
        n = min(r.shape[0], max_length)
        span = slice(max_length - n, max_length) if left_padding else slice(0, n)
        features[i, span], mask[i, span] = r[:n], True
    return features, mask
