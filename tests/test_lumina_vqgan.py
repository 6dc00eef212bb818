"""Chameleon's VQGAN decoder (lumina_mgpt/vqgan.py): official key list, decode against an independent
functional re-derivation of the fact sheet's decode path, strict loading, the official uint8 conversion."""
import pytest
import torch
import torch.nn.functional as F

from common.weights.checkpoint import CheckpointError
from lumina_mgpt.vqgan import (VQGAN_PRESETS, ChameleonVQGAN, config_from_yaml, load_vqgan, random_vqgan,
                               to_uint8_official)
from tests.helpers.files import checkpoint_state, write_vqgan
from tests.official_keys import KEYS_DIR

TINY = VQGAN_PRESETS["tiny"]


def official_keys():
    lines = (KEYS_DIR / "chameleon_vqgan.txt").read_text().splitlines()[1:]
    return {k: [int(x) for x in shape.strip("[]").split(",")] for k, shape in (line.split(" ", 1) for line in lines)}


def test_decoder_keys_equal_the_official_list():
    ours = {k: list(v.shape) for k, v in ChameleonVQGAN(VQGAN_PRESETS["chameleon"]).state_dict().items()}
    official = official_keys()
    # quant_conv is the encoder side (dropped by name when loading), the rest must match exactly
    assert ours == {k: v for k, v in official.items() if not k.startswith("quant_conv.")}
    assert sum(v.numel() for k, v in ChameleonVQGAN(VQGAN_PRESETS["chameleon"]).state_dict().items()
               if k.startswith("decoder.")) == 39294851  # the fact sheet's decoder parameter count


def reference_decode(sd, cfg, codes):
    """The decode path written out from the fact sheet (section 4.3) with functional ops on the state dict."""
    def gn(x, p):
        return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], eps=1e-6)

    def conv(x, p, pad):
        return F.conv2d(x, sd[p + ".weight"], sd[p + ".bias"], padding=pad)

    def res(x, p):
        h = conv(F.silu(gn(x, p + ".norm1")), p + ".conv1", 1)
        h = conv(F.silu(gn(h, p + ".norm2")), p + ".conv2", 1)
        return (conv(x, p + ".nin_shortcut", 0) if p + ".nin_shortcut.weight" in sd else x) + h

    def attn(x, p):
        B, C, H, W = x.shape
        h = gn(x, p + ".norm")
        q, k, v = (conv(h, f"{p}.{n}", 0).reshape(B, C, H * W) for n in "qkv")
        w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * C ** -0.5, dim=-1)
        return x + conv(torch.einsum("bij,bcj->bci", w, v).reshape(B, C, H, W), p + ".proj_out", 0)

    z = sd["quantize.embedding.weight"][codes].permute(0, 3, 1, 2)
    h = conv(conv(z, "post_quant_conv", 0), "decoder.conv_in", 1)
    h = res(attn(res(h, "decoder.mid.block_1"), "decoder.mid.attn_1"), "decoder.mid.block_2")
    for level in reversed(range(len(cfg.ch_mult))):
        for j in range(cfg.num_res_blocks + 1):
            h = res(h, f"decoder.up.{level}.block.{j}")
        if level:
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), f"decoder.up.{level}.upsample.conv", 1)
    return conv(F.silu(gn(h, "decoder.norm_out")), "decoder.conv_out", 1)


def randomized(seed):
    model = random_vqgan(seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial norms too
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model


def test_decode_equals_the_independent_derivation():
    model = randomized(0)
    codes = torch.randint(0, TINY.n_embed, (2, 3, 5), generator=torch.Generator().manual_seed(1))
    out = model.decode(codes)
    assert out.shape == (2, 3, 3 * TINY.downsample, 5 * TINY.downsample)
    with torch.no_grad():
        ref = reference_decode(model.state_dict(), TINY, codes)
    assert (out - ref).abs().max() <= 1e-4
    assert out.std() > 0.01  # not a degenerate constant image


def test_load_round_trip(tmp_path):
    model = randomized(3)
    write_vqgan(tmp_path / "vq", checkpoint_state(model))
    assert config_from_yaml(tmp_path / "vq" / "vqgan.yaml") == TINY
    loaded = load_vqgan(tmp_path / "vq")
    codes = torch.randint(0, TINY.n_embed, (1, 2, 2))
    assert torch.equal(loaded.decode(codes), model.decode(codes))


@pytest.mark.parametrize("damage,message", [
    (lambda s: s.pop("decoder.conv_out.bias"), "missing key 'decoder.conv_out.bias'"),
    (lambda s: s.update({"decoder.extra.weight": torch.zeros(1)}), "unexpected key 'decoder.extra.weight'"),
    (lambda s: s.update({"post_quant_conv.bias": torch.zeros(5)}), "'post_quant_conv.bias' has shape"),
])
def test_load_errors_name_the_key(tmp_path, damage, message):
    state = checkpoint_state(random_vqgan(0))
    damage(state)
    write_vqgan(tmp_path / "vq", state)
    with pytest.raises(CheckpointError, match=message):
        load_vqgan(tmp_path / "vq")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_vqgan(tmp_path / "nope")
    (tmp_path / "vq").mkdir()
    with pytest.raises(FileNotFoundError, match="vqgan.yaml"):
        load_vqgan(tmp_path / "vq")


def test_uint8_conversion_truncates_like_upstream():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    # (x + 1) / 2 * 255 truncated: 0, 0, 127 (127.5), 254 (254.87), 255
    assert to_uint8_official(x)[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255]


def test_random_vqgan_is_seeded():
    a, b, c = random_vqgan(1), random_vqgan(1), random_vqgan(2)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.quantize.embedding.weight, c.quantize.embedding.weight)


def test_pickled_lightning_checkpoint_has_a_way_out(tmp_path):
    """A vqgan.ckpt holding objects a safe load refuses names the converter; after converting, the
    folder loads from vqgan.safetensors with the same weights."""
    import types

    from common.convert import cli as convert_cli

    model = randomized(4)
    write_vqgan(tmp_path / "vq", checkpoint_state(model))
    ckpt = tmp_path / "vq" / "vqgan.ckpt"
    torch.save({"state_dict": checkpoint_state(model), "hparams": types.SimpleNamespace(lr=1e-4)}, ckpt)
    with pytest.raises(CheckpointError, match="common.convert .*--trust-pickle"):
        load_vqgan(tmp_path / "vq")
    assert convert_cli([str(ckpt), "--trust-pickle"]) == 0
    codes = torch.randint(0, TINY.n_embed, (1, 2, 2))
    assert torch.equal(load_vqgan(tmp_path / "vq").decode(codes), model.decode(codes))
