"""Janus-Pro's sampling defaults, read by janus/generate.py and `sample_ddp.py --model janus-pro-1b|janus-pro-7b`.

deepseek-ai/Janus generation_inference.py: classifier-free guidance weight 5 with the padded-prompt branch,
temperature 1, no top-k or top-p, 384 x 384 px (a 24 x 24 grid), 16 images a batch (parallel_size).
"""
from common.t2i_pipeline import PromptPreset

PRESETS: dict[str, PromptPreset] = {
    f"janus-pro-{size.lower()}": PromptPreset(size=384, cfg_scale=5.0, top_k=0,
                                              checkpoint=f"deepseek-ai/Janus-Pro-{size}", config=size)
    for size in ("1B", "7B")
}
DEFAULT = PRESETS["janus-pro-7b"]
