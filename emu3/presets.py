"""Emu3-Gen's sampling defaults, read by emu3/generate.py and `sample_ddp.py --model emu3-gen`.

Emu3/image_generation.py: classifier-free guidance 3.0 with its negative prompt, top-k 2048, temperature 1,
top-p 1; sizes from an aspect ratio and the model's image area (1:1 -> 90x90 tokens, 720x720 px).
"""
from common.t2i_pipeline import PromptPreset

PRESETS: dict[str, PromptPreset] = {
    "emu3-gen": PromptPreset(size="1:1", cfg_scale=3.0, top_k=2048, checkpoint="BAAI/Emu3-Gen", config="8B"),
}
DEFAULT = PRESETS["emu3-gen"]
