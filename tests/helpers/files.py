"""Checkpoint files on disk for loader tests: sharded safetensors with an index, a Meta-style VQGAN
folder (vqgan.yaml + vqgan.ckpt) and its checkpoint state, a Lumina-mGPT (Chameleon) HF model folder."""
import json

import torch
import yaml
from safetensors.torch import save_file

from lumina_mgpt.vqgan import VQGAN_PRESETS


def write_shards(state, folder, split=2):
    keys = sorted(state)
    weight_map = {}
    for i in range(split):
        part = {k: state[k].contiguous() for k in keys[i::split]}
        name = f"model-{i + 1:05d}-of-{split:05d}.safetensors"
        save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def write_vqgan(folder, state, cfg=VQGAN_PRESETS["tiny"]):
    folder.mkdir(exist_ok=True)
    params = {"embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed, "ckpt_path": "unused",
              "lossconfig": {"target": "unused"},
              "ddconfig": {"double_z": False, "z_channels": cfg.z_channels, "resolution": 512, "in_channels": 3,
                           "out_ch": 3, "ch": cfg.ch, "ch_mult": list(cfg.ch_mult),
                           "num_res_blocks": cfg.num_res_blocks, "attn_resolutions": [], "dropout": 0.0}}
    (folder / "vqgan.yaml").write_text(yaml.safe_dump({"model": {"target": "VQModel", "params": params}}))
    torch.save({"state_dict": state}, folder / "vqgan.ckpt")


def checkpoint_state(model):
    """What Meta's checkpoint holds: our keys plus encoder-side and loss keys that decoding drops."""
    return {**model.state_dict(), "encoder.conv_in.weight": torch.zeros(4, 3, 3, 3),
            "quant_conv.weight": torch.zeros(4, 4, 1, 1), "quant_conv.bias": torch.zeros(4),
            "loss.discriminator.main.0.weight": torch.zeros(2)}


def write_folder(folder, model, extra=None, drop=None):
    folder.mkdir(exist_ok=True)
    state = dict(model.state_dict())
    state.update(extra or {})
    for key in drop or []:
        state.pop(key)
    write_shards(state, folder)
    c = model.config
    (folder / "config.json").write_text(json.dumps({
        "model_type": "chameleon", "vocab_size": c.vocab_size, "hidden_size": c.dim, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads, "intermediate_size": c.ffn_hidden,
        "rope_theta": c.rope_theta, "rms_norm_eps": c.norm_eps, "swin_norm": False}))
