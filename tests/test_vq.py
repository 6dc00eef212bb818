"""Tests for common/models/vq.py: official state-dict layout, decode/encode semantics (CPU, seconds)."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from common.models.vq import VQ_PRESETS, VQModel, vq_config
from tests.official_keys import official_keys



def _official(name: str) -> dict[str, tuple[int, ...]]:
    return official_keys(f"llamagen_{name}")


@pytest.fixture(scope="module")
def tiny() -> VQModel:
    torch.manual_seed(0)
    return VQModel(vq_config("VQ-tiny")).eval()


@pytest.mark.parametrize("name, n_keys", [("VQ-16", 344), ("VQ-8", 300)])
def test_state_dict_matches_official(name, n_keys):
    official = _official(name)
    assert len(official) == n_keys
    with torch.device("meta"):
        model = VQModel(vq_config(name))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(official) - set(ours)) == [], "keys missing from our model"
    assert sorted(set(ours) - set(official)) == [], "extra keys in our model"
    bad = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert bad == {}


@pytest.mark.parametrize("name, n_params", [("VQ-16", 71_883_403), ("VQ-8", 70_109_835)])
def test_param_count(name, n_params):
    # Totals quoted in shared/reference/llamagen.md section 3.1 (parameters only, no buffer).
    with torch.device("meta"):
        model = VQModel(vq_config(name))
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_downsample_property():
    assert vq_config("VQ-16").downsample == 16
    assert vq_config("VQ-8").downsample == 8
    assert vq_config("VQ-tiny").downsample == 2


@torch.no_grad()
def test_decode_code_shape_and_manual_path(tiny):
    cfg = tiny.config
    b, h, w = 2, 3, 5
    codes = torch.randint(0, cfg.codebook_size, (b, h * w))
    out = tiny.decode_code(codes, (h, w))
    assert out.shape == (b, 3, h * cfg.downsample, w * cfg.downsample)
    assert out.dtype == torch.float32

    cb = F.normalize(tiny.quantize.embedding.weight, p=2, dim=-1)
    lat = cb[codes].reshape(b, h, w, -1).permute(0, 3, 1, 2)  # raster order, channel-first
    assert torch.equal(tiny.codes_to_latent(codes, (h, w)), lat)
    ref = tiny.decoder(tiny.post_quant_conv(lat))
    torch.testing.assert_close(out, ref)
    # token n sits at (n // w, n % w)
    n = 7
    torch.testing.assert_close(tiny.codes_to_latent(codes, (h, w))[:, :, n // w, n % w], cb[codes[:, n]])


@torch.no_grad()
def test_decode_code_ignores_codebook_row_norm():
    torch.manual_seed(1)
    model = VQModel(vq_config("VQ-tiny")).eval()
    codes = torch.randint(0, 8, (1, 16))
    before = model.decode_code(codes, (4, 4))
    model.quantize.embedding.weight[:8] *= 5.0
    after = model.decode_code(codes, (4, 4))
    torch.testing.assert_close(after, before)


@torch.no_grad()
def test_nearest_codes_round_trip(tiny):
    cfg = tiny.config
    codes = torch.randperm(cfg.codebook_size)[:48].reshape(2, 24)
    lat = tiny.codes_to_latent(codes, (4, 6))
    got = tiny.nearest_codes(lat)
    assert got.dtype == torch.long and torch.equal(got, codes)
    # Scale-invariant: cosine similarity ignores the latent norm.
    assert torch.equal(tiny.nearest_codes(3.0 * lat), codes)


@torch.no_grad()
def test_encode_uses_nearest_codes(tiny):
    cfg = tiny.config
    images = torch.rand(2, 3, 16, 12) * 2 - 1
    codes = tiny.encode(images)
    h, w = 16 // cfg.downsample, 12 // cfg.downsample
    assert codes.shape == (2, h * w) and codes.dtype == torch.long
    z = tiny.quant_conv(tiny.encoder(images))
    assert z.shape == (2, cfg.codebook_embed_dim, h, w)
    assert torch.equal(codes, tiny.nearest_codes(z))
    # Brute-force: argmin L2 distance of normalised vectors (upstream's formulation).
    zf = F.normalize(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), dim=-1)
    cb = F.normalize(tiny.quantize.embedding.weight, dim=-1)
    assert torch.equal(codes.reshape(-1), torch.cdist(zf, cb).argmin(dim=-1))


@torch.no_grad()
def test_decode_runs_fp32_under_autocast(tiny):
    codes = torch.randint(0, tiny.config.codebook_size, (1, 4))
    ref = tiny.decode_code(codes, (2, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny.decode(tiny.codes_to_latent(codes, (2, 2)).to(torch.bfloat16))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-2)


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError) as exc:
        vq_config("VQ-32")
    for name in VQ_PRESETS:
        assert name in str(exc.value)


@torch.no_grad()
def test_attn_matches_explicit_formula():
    # softmax(q^T k * C^-0.5) over positions, written out with bmm as upstream does.
    from common.models.vq import AttnBlock

    torch.manual_seed(2)
    blk, x = AttnBlock(64), torch.randn(2, 64, 5, 7)
    b, c, hh, ww = x.shape
    h = blk.norm(x)
    q = blk.q(h).reshape(b, c, -1).permute(0, 2, 1)  # (B, HW, C)
    k, v = blk.k(h).reshape(b, c, -1), blk.v(h).reshape(b, c, -1)  # (B, C, HW)
    attn = torch.softmax(torch.bmm(q, k) * c**-0.5, dim=2)  # (B, HWq, HWk)
    ref = x + blk.proj_out(torch.bmm(v, attn.permute(0, 2, 1)).reshape(b, c, hh, ww))
    torch.testing.assert_close(blk(x), ref)
