"""Emu3's vision tokenizer decoder (emu3/vision_decoder.py): parity with transformers' Emu3VQVAE, the
single-frame shortcut, the official key list, loading and the official uint8 conversion."""
import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from common.weights.checkpoint import CheckpointError
from emu3.checkpoint import VQ_ENCODER_PREFIXES, hf_vq_name, load_vision_decoder
from emu3.config import PRESETS, VisionConfig
from emu3.vision_decoder import VisionDecoder, random_init_vision_, to_uint8_official

TINY = PRESETS["tiny"].vision
KEYS_TSV = Path(__file__).resolve().parent / "data" / "keys" / "emu3_visionvq.tsv"  # copy of ../shared/reference/keys


def tiny_decoder(seed=0, config=TINY):
    vq = VisionDecoder(config).eval()
    random_init_vision_(vq, seed)
    return vq


def hf_vqvae(config: VisionConfig):
    from transformers import Emu3VQVAE, Emu3VQVAEConfig
    return Emu3VQVAE(Emu3VQVAEConfig(
        codebook_size=config.codebook_size, embed_dim=config.embed_dim, latent_channels=config.z_channels,
        base_channels=config.ch, channel_multiplier=list(config.ch_mult), num_res_blocks=config.num_res_blocks,
        attn_resolutions=list(config.attn_resolutions), temporal_downsample_factor=config.temporal_downsample_factor,
        hidden_size=config.ch * config.ch_mult[-1], num_attention_heads=1)).eval()


def copy_into_hf(ours: VisionDecoder, hf) -> None:
    """Every decoder-side transformers key maps (hf_vq_name) onto exactly one of ours; 1x1 convs -> Linear."""
    state = ours.state_dict()
    hf_keys = [k for k in hf.state_dict() if not hf_vq_name(k).startswith(VQ_ENCODER_PREFIXES)]
    assert sorted(hf_vq_name(k) for k in hf_keys) == sorted(state)
    with torch.no_grad():
        for key in hf_keys:
            target = hf.state_dict()[key]
            target.copy_(state[hf_vq_name(key)].reshape(target.shape))


def test_decoder_matches_transformers_emu3_vqvae():
    ours = tiny_decoder()
    hf = hf_vqvae(TINY)
    copy_into_hf(ours, hf)
    codes = torch.randint(0, TINY.codebook_size, (2, 3, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        image, video = ours.decode(codes), ours.decode_video(codes)
        assert image.shape == (2, 3, 6, 10) and video.shape == (2, 4, 3, 6, 10)
        assert (image - hf.decode(codes)).abs().max() <= 1e-4
        assert (video - hf.decode(codes[:, None])).abs().max() <= 1e-4  # T=1 codes: all four frames


def test_single_frame_shortcut_equals_the_full_path():
    ours = tiny_decoder(seed=3)
    codes = torch.randint(0, TINY.codebook_size, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        video = ours.decode_video(codes)
        assert (ours.decode(codes) - video[:, 0]).abs().max() <= 1e-5
        assert (video[:, 1] - video[:, 0]).abs().max() > 1e-2  # the later frames differ: the stem is not trivial


def test_batchnorm_uses_running_stats_in_any_mode():
    ours = tiny_decoder(seed=1)
    codes = torch.randint(0, TINY.codebook_size, (1, 2, 2), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        evaluated = ours.decode(codes)
        assert torch.equal(ours.train().decode(codes), evaluated)


def official_rows():
    with open(KEYS_TSV) as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    assert len(rows) == 495
    return rows


def test_key_list_matches_the_official_checkpoint():
    """Our decoder's keys and shapes are exactly the decoder side of BAAI/Emu3-VisionTokenizer."""
    with torch.device("meta"):
        vq = VisionDecoder(PRESETS["8B"].vision)
    ours = {k: tuple(v.shape) for k, v in vq.state_dict().items()}
    official = {r[0]: eval(r[1]) for r in official_rows()}  # shapes written as Python tuples
    decoder_side = {k: s for k, s in official.items() if not k.startswith(VQ_ENCODER_PREFIXES)}
    assert ours == decoder_side
    assert len(official) - len(decoder_side) == sum(k.startswith(VQ_ENCODER_PREFIXES) for k in official) > 100


def test_hf_names_map_back_to_the_original_names():
    """The tsv's converted (-hf) column, run through our inverse renames, gives the original column."""
    for original, _, _, hf_on_disk, _ in official_rows():
        assert hf_vq_name(hf_on_disk.split()[0]) == original  # attention rows note "[squeezed to (C, C)]"


def write_vq_folder(folder, state):
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))


def test_load_original_folder_drops_only_the_encoder(tmp_path):
    src = tiny_decoder(seed=4)
    state = dict(src.state_dict())
    state["encoder.conv_in.weight"] = torch.zeros(32, 3, 3, 3)
    state["quant_conv.conv.weight"] = torch.zeros(4, 4, 3, 1, 1)
    write_vq_folder(tmp_path, state)
    vq = load_vision_decoder(tmp_path, TINY, "cpu")
    for key, value in src.state_dict().items():
        assert torch.equal(vq.state_dict()[key], value), key


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("decoder.mid.attn_1.q.weight"), "missing key 'decoder.mid.attn_1.q.weight'"),
    (lambda s: s.update({"decoder.extra.weight": torch.zeros(1)}), "unexpected key 'decoder.extra.weight'"),
    (lambda s: s.update({"quantize.embedding.weight": torch.zeros(8, 4)}), "'quantize.embedding.weight' has shape"),
])
def test_vq_load_errors_name_the_key(tmp_path, damage, message):
    state = dict(tiny_decoder().state_dict())
    damage(state)
    write_vq_folder(tmp_path, state)
    with pytest.raises(CheckpointError, match=message):
        load_vision_decoder(tmp_path, TINY, "cpu")


def test_official_uint8_conversion_truncates():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]).view(1, 1, 1, 6).expand(1, 3, 1, 6)
    assert to_uint8_official(x)[0, 0, :, 0].tolist() == [0, 0, 127, 191, 255, 255]  # 127.5 -> 127, 191.25 -> 191
