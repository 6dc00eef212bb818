"""The model families, listed once. sample_ddp.py (its --model presets), the benchmarks, the GPU suite and the
tests read this table; nothing else lists the families. A new family is its folder (model, checkpoint
loading, pipeline over common/t2i_pipeline.py, presets, CLI) and one entry here: docs/families.md.

This module sits above the model folders (it imports them); common/ imports no model folder.
"""
from dataclasses import dataclass, field
from typing import Callable

from common.t2i_pipeline import PromptPreset
from emu3 import config as emu3_config, pipeline as emu3_pipeline, presets as emu3_presets
from janus import config as janus_config, pipeline as janus_pipeline, presets as janus_presets
from llamagen.presets import FID_PRESETS, Preset
from lumina_mgpt import config as lumina_config, pipeline as lumina_pipeline, presets as lumina_presets


@dataclass(frozen=True)
class Family:
    """One model family. Text-to-image families give `load`, `speed` and `configs`; a class-conditional
    one (LlamaGen) gives none of them and samples through llamagen.loader.ClassImages."""

    name: str  # the key: benchmarks' --family, the GPU suite's rows
    title: str  # the model's name as its paper writes it
    clis: tuple[str, ...]  # its command-line modules (python -m NAME), docs/cli.md's columns
    presets: dict[str, Preset | PromptPreset]  # sample_ddp.py --model NAME -> sampling defaults
    # text-to-image: load(preset, model_path, vq_path, tokenizer_path, device, dtype, random_init, seed) -> pipeline
    load: Callable | None = None
    # text-to-image: speed(tiny, dims, dtype, device) -> (pipeline, size, text config) with random
    # weights on the real grid (benchmarks/t2i_latency.py, the GPU suite)
    speed: Callable | None = None
    configs: tuple[str, ...] = field(default=())  # architectures --random-init --config builds
    gpu_windows: tuple[int, ...] = ()  # the GPU suite's ZipAR windows on the real grid
    gpu_batches: tuple[int, ...] = (1, 4)  # and its batch sizes

    @property
    def text_to_image(self) -> bool:
        return self.load is not None

    @property
    def sampling(self) -> dict:
        """Guidance and top-k of the family's first preset: what its speed benchmarks decode with."""
        first = next(iter(self.presets.values()))
        return dict(cfg_scale=first.cfg_scale, top_k=first.top_k)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llamagen", "LlamaGen", ("llamagen.sample", "llamagen.sample_t2i"), FID_PRESETS),
    Family("lumina", "Lumina-mGPT", ("lumina_mgpt.generate",), lumina_presets.PRESETS, lumina_pipeline.load_preset,
           lumina_pipeline.speed_pipeline, tuple(lumina_config.PRESETS), gpu_windows=(14,)),
    Family("emu3", "Emu3-Gen", ("emu3.generate",), emu3_presets.PRESETS, emu3_pipeline.load_preset,
           emu3_pipeline.speed_pipeline, tuple(emu3_config.PRESETS), gpu_windows=(7,)),
    Family("janus", "Janus-Pro", ("janus.generate",), janus_presets.PRESETS, janus_pipeline.load_preset,
           janus_pipeline.speed_pipeline, tuple(janus_config.PRESETS), gpu_windows=(8, 16),
           gpu_batches=(1, 16)),
)}
TEXT_TO_IMAGE: dict[str, Family] = {name: f for name, f in FAMILIES.items() if f.text_to_image}
# sample_ddp.py --model NAME -> (its family, its preset)
PRESETS: dict[str, tuple[Family, Preset | PromptPreset]] = {
    name: (f, preset) for f in FAMILIES.values() for name, preset in f.presets.items()}
CLIS: tuple[str, ...] = tuple(cli for f in FAMILIES.values() for cli in f.clis)


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; valid: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def preset(name: str) -> tuple[Family, Preset | PromptPreset]:
    """sample_ddp.py's --model NAME: (family, preset); ValueError listing the valid names."""
    if name not in PRESETS:
        raise ValueError(f"unknown --model {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]
