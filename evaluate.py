"""Score a sample .npz from sample_ddp.py: FID and Inception Score, or for the demo model digits-FID and accuracy.

python evaluate.py samples/demo-...-n64.npz --digits
python evaluate.py samples/llamagen-L-...-n50000.npz VIRTUAL_imagenet256_labeled.npz

ImageNet: Inception features from torch-fidelity (toshas/torch-fidelity), imported only here and only when
asked for. Chosen over pytorch-fid and clean-fid because its `inception-v3-compat` extractor is a port of the
TensorFlow Inception graph (weights of 2015-12-05, TF1-style bilinear resize to 299) that the ADM evaluator
(LlamaGen's evaluations/c2i/evaluator.py) also uses, so its pool features can be compared with the reference
batch's stored statistics; it is maintained and has no TensorFlow dependency. Its weights are read from the
torch hub cache (or --inception-weights); nothing is downloaded. FID uses the reference's `mu`/`sigma` when the
file has them (the ADM reference batches do), else the features of its `arr_0` images. For the paper's sFID,
precision and recall, run the ADM evaluator on the same npz.

Demo model (--digits): the pixels go back to 24x24 grey levels (block means; exact for the demo tokenizer's
nearest upscaling) and llamagen.demo_classifier scores them against the real digits' feature statistics.

Images repeated byte for byte in the sample file, or a reference holding the very same images, make the
score meaningless: each is a `warning:` line after the figures and an entry of the JSON's "warnings".
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.cli import HelpFormatter, check_device, run_main
from common.metrics import feature_stats, frechet_distance, repeated_images_warning, same_images
from llamagen.demo_classifier import DigitScorer
from llamagen.presets import DEMO_DIR

INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release v0.2.0 asset
DIGITS_SIZE = 24  # the demo classifier's input


class EvalError(ValueError):
    """Something the evaluation needs is missing or malformed; the message says what."""


def load_samples(path: str | Path, what: str = "sample file") -> tuple[np.ndarray, np.ndarray | None]:
    """(N, H, W, 3) uint8 images from arr_0, and arr_1 labels if present; N >= 2 (a covariance needs two)."""
    path = Path(path)
    if path.is_dir():
        raise EvalError(f"{what} {path} is a folder; expected an .npz (sample_ddp.py writes RUN-nN.npz)")
    if not path.is_file():
        raise EvalError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f:
                raise EvalError(f"{path} has no arr_0 (keys: {', '.join(f.files)})")
            images, labels = f["arr_0"], f["arr_1"] if "arr_1" in f else None
    except EvalError:
        raise
    except Exception as e:  # not a zip, truncated, pickled objects, a bare .npy
        raise EvalError(f"cannot read {what} {path} as an .npz: {type(e).__name__}: {e}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise EvalError(f"{path}: arr_0 must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) < 2:
        raise EvalError(f"{path} holds {len(images)} image(s); FID needs at least 2 (their covariance)")
    if labels is not None and labels.shape != (len(images),):
        raise EvalError(f"{path}: arr_1 must hold one label per image, ({len(images)},), got {labels.shape}")
    return images, labels


def check_digit_images(images: np.ndarray, path) -> None:
    """--digits scores the demo model's images: grey (R = G = B) squares whose side is a multiple of 24, so
    block means recover its 24x24 grid exactly (sample_ddp.py --model demo saves 96x96). Other images (an
    ImageNet run's 256 px colour images, say) would give a meaningless digits-FID."""
    n, h, w, _ = images.shape
    if h != w or h % DIGITS_SIZE:
        raise EvalError(f"--digits scores the demo model's {DIGITS_SIZE}x{DIGITS_SIZE}-token digits, saved as square "
                        f"images a multiple of {DIGITS_SIZE} px wide (sample_ddp.py --model demo: 96x96); {path} "
                        f"holds {h}x{w} images")
    if not (np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])):
        raise EvalError(f"--digits scores the demo model's grey digits; {path} holds colour images")


def digits_grey(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 1, 24, 24) grey levels in [0, 1] (channel 0; block means)."""
    grey = torch.from_numpy(images[..., 0]).double()[:, None]
    return F.adaptive_avg_pool2d(grey, DIGITS_SIZE).div(255).float()  # in float64: the demo's pixel 17t gives t/15 bit-exactly


def check_labels(labels: np.ndarray, classes: int, path) -> None:
    """arr_1 must hold the classifier's classes, integers 0 .. classes - 1: other labels (float, text, 99, -1)
    would count every image as misclassified and report an accuracy of 0 as if it were measured."""
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise EvalError(f"{path}: arr_1 holds {labels.dtype} labels; --digits needs integer classes 0..{classes - 1}")
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise EvalError(f"{path}: arr_1 holds {bad.size} label(s) outside the classifier's classes 0..{classes - 1} "
                        f"(e.g. {bad[0]})")


def digits_metrics(images: np.ndarray, labels: np.ndarray | None, classifier: str | Path, path=None) -> dict:
    """Digits-FID and class accuracy of demo samples; labels default to i % classes (sample_ddp's classes)."""
    scorer = DigitScorer.load(classifier)
    if labels is None:
        labels = np.arange(len(images)) % scorer.classes
    check_labels(labels, scorer.classes, path)
    scores = scorer.score(digits_grey(images), torch.from_numpy(labels.astype(np.int64)))
    return {"num_images": len(images), **scores}


def inception_extractor(weights: str | Path | None, device: torch.device):
    """torch-fidelity's TF-compatible InceptionV3: uint8 (B, 3, H, W) -> ((B, 2048) pool, (B, 1008) logits)."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except (ImportError, RuntimeError, OSError) as e:  # not installed; or torchvision fails to load beside this
        # torch (RuntimeError "operator torchvision::nms does not exist", OSError for a missing shared library)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise EvalError(f"FID needs torch-fidelity and a torchvision that imports beside torch {torch.__version__} "
                        f"(pip install torch-fidelity): {type(e).__name__}: {first}") from None
    path = Path(weights) if weights else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS
    if not path.is_file():
        raise EvalError(f"Inception weights not found: {path} (torch-fidelity's {INCEPTION_WEIGHTS}; "
                        "put it there or pass --inception-weights)")
    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                        feature_extractor_weights_path=str(path))
    return model.to(device).eval()


@torch.no_grad()
def extract(extractor, images: np.ndarray, batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 -> (N, D) pool features and (N, C) logits, in float64."""
    pools, logits = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).to(device)  # (B, 3, H, W)
        pool, logit = extractor(x)
        pools.append(pool.double().cpu())
        logits.append(logit.double().cpu())
    return torch.cat(pools).numpy(), torch.cat(logits).numpy()


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per split (Salimans et al. 2016); mean and std over splits."""
    logp = torch.from_numpy(logits).log_softmax(-1)
    scores = []
    for part in torch.tensor_split(logp, splits):
        marginal = part.exp().mean(0).log()
        scores.append((part.exp() * (part - marginal)).sum(-1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def check_reference(path: str | Path) -> Path:
    """A readable reference .npz holding mu and sigma (an ADM reference batch) or arr_0 images."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"reference file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as ref:
            keys = ref.files
    except Exception as e:  # not a zip, truncated, a bare .npy
        raise EvalError(f"cannot read reference {path} as an .npz: {type(e).__name__}: {e}") from None
    if not ({"mu", "sigma"} <= set(keys) or "arr_0" in keys):
        raise EvalError(f"{path} has neither mu/sigma nor arr_0 (keys: {', '.join(keys)})")
    return path


def inception_metrics(images: np.ndarray, reference: str | Path, extractor, batch_size: int,
                      device: torch.device) -> dict:
    """FID against the reference (its stored mu/sigma if any, else its arr_0 images) and IS of the samples."""
    reference = check_reference(reference)
    warnings = []
    pool, logits = extract(extractor, images, batch_size, device)
    mu, sigma = feature_stats(pool)
    with np.load(reference) as ref:
        if "mu" in ref and "sigma" in ref:
            ref_mu, ref_sigma, ref_from = ref["mu"], ref["sigma"], "stored mu/sigma"
        elif "arr_0" in ref:
            ref_images = ref["arr_0"]
            if same_images(images, ref_images):
                warnings.append(f"the samples and the reference {reference} hold the same images: the FID of a set "
                                "against itself is about 0 and says nothing about a model")
            ref_mu, ref_sigma = feature_stats(extract(extractor, ref_images, batch_size, device)[0])
            ref_from = f"{len(ref_images)} images"
        else:
            raise EvalError(f"{reference} has neither mu/sigma nor arr_0 (keys: {', '.join(ref.files)})")
    is_mean, is_std = inception_score(logits)
    return {"num_images": len(images), "fid": frechet_distance(mu, sigma, ref_mu, ref_sigma),
            "inception_score": is_mean, "inception_score_std": is_std, "reference": str(reference),
            "reference_statistics": ref_from, "warnings": warnings}


def main(args: argparse.Namespace) -> dict:
    if args.digits and args.reference is not None:
        raise EvalError(f"--digits scores against the demo classifier's stored statistics of real digits; the "
                        f"reference {args.reference} would be ignored: drop it, or drop --digits for FID against it")
    if args.batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = check_device(args.device)
    images, labels = load_samples(args.samples)
    if args.digits:
        check_digit_images(images, args.samples)
        result = digits_metrics(images, labels, args.classifier, args.samples)
        print(f"digits-FID: {result['digits_fid']:.4f}\naccuracy: {result['accuracy']:.4f}", file=sys.stderr)
    else:
        if args.reference is None:
            raise EvalError("FID needs a reference .npz (e.g. VIRTUAL_imagenet256_labeled.npz), or --digits for the demo model")
        check_reference(args.reference)
        extractor = inception_extractor(args.inception_weights, device)
        result = inception_metrics(images, args.reference, extractor, args.batch_size, device)
        print(f"FID: {result['fid']:.4f}\nInception Score: {result['inception_score']:.4f}", file=sys.stderr)
    repeated = repeated_images_warning(images, args.samples)
    result["warnings"] = [*([repeated] if repeated else []), *result.get("warnings", [])]
    for text in result["warnings"]:  # after the figures they qualify
        print(f"warning: {text}", file=sys.stderr)
    print(json.dumps(result))
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("samples", help="sample .npz (arr_0: uint8 NHWC images; arr_1: labels, optional)")
    p.add_argument("reference", nargs="?", default=None, help="reference .npz for FID (ADM reference batch)")
    p.add_argument("--digits", action="store_true", help="demo model: digits-FID and class accuracy instead of FID")
    p.add_argument("--classifier", default=str(DEMO_DIR / "digit_classifier.pt"), help="demo digit classifier")
    p.add_argument("--inception-weights", default=None,
                   help=f"path of {INCEPTION_WEIGHTS}; default: the torch hub cache's checkpoints folder")
    p.add_argument("--batch-size", type=int, default=64, help="images per Inception batch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    return p


def cli(argv=None) -> int:
    return run_main(main, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(cli())
