"""Lumina-mGPT's sampling defaults, read by lumina_mgpt/generate.py and `sample_ddp.py --model lumina-mgpt-*`.

inference_solver.py (create_logits_processor): CFG 3.0 on the branch that starts at BOI, image top-k 2000,
temperature 1, top-p 1. One preset per checkpoint resolution, sampling square images of that size.
"""
from common.t2i_pipeline import PromptPreset
from lumina_mgpt.config import RESOLUTIONS

PRESETS: dict[str, PromptPreset] = {
    f"lumina-mgpt-{r}": PromptPreset(size=(r, r), cfg_scale=3.0, top_k=2000,
                                     checkpoint=f"Alpha-VLLM/Lumina-mGPT-7B-{r}", config="7B") for r in RESOLUTIONS
}
DEFAULT = PRESETS["lumina-mgpt-768"]
