"""Train the demo model: the LlamaGen GPT (`demo` preset) on 24x24 digits, plus the digit classifier
that scores its samples. One command, deterministic, CPU:

python -m llamagen.train_demo --out-dir checkpoints/demo
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.metrics import feature_stats
from llamagen.demo_classifier import DigitClassifier
from llamagen.demo_data import GRID, load_digits_split, render
from llamagen.demo_tokenizer import IntensityTokenizer
from llamagen.model import Transformer, gpt_config, random_init_

CLASS_DROPOUT = 0.1  # LlamaGen's class_dropout_prob: trains the null class that CFG uses


def causal_logits(gpt: Transformer, labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits (B, N, V): [class, t_0 .. t_{N-2}] in, predictions of t_0 .. t_{N-1} out."""
    x = torch.cat([gpt.embed_condition(labels), gpt.embed_tokens(tokens[:, :-1])], dim=1)
    L = x.shape[1]
    positions = torch.arange(L)
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    return gpt(x, positions, positions, mask, gpt.new_cache(x.shape[0], L, x.device))


def train_generator(args, tokenizer: IntensityTokenizer, log) -> Transformer:
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    images, labels = load_digits_split("generator")
    gpt = Transformer(gpt_config("demo"), grid_size=GRID)
    random_init_(gpt, args.seed)
    gpt.train()
    opt = torch.optim.AdamW(gpt.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    bar = tqdm(range(args.steps), desc="generator", file=sys.stderr, disable=args.quiet)
    for step in bar:
        idx = torch.randint(len(labels), (args.batch_size,), generator=gen)
        tokens = tokenizer.encode(render(images[idx], gen))
        y = labels[idx].clone()
        y[torch.rand(len(y), generator=gen) < CLASS_DROPOUT] = gpt.null_class
        logits = causal_logits(gpt, y, tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gpt.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 50 == 0 or step == args.steps - 1:
            log({"step": step, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0]})
        if (step + 1) % args.save_every == 0 or step == args.steps - 1:
            save_atomic({"model": gpt.state_dict(), "steps": step + 1}, Path(args.out_dir) / "gpt_demo.pt")
    return gpt.eval()


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train_classifier(args, tokenizer: IntensityTokenizer, log) -> dict:
    """Train on the classifier split, test on the held-out split; both unseen by the generator.
    Images go through the tokenizer round trip, as generated samples do."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    torch.manual_seed(args.seed + 1)
    as_tokens = lambda x: tokenizer.codes_to_grey(tokenizer.encode(x), (GRID, GRID))  # noqa: E731
    images, labels = load_digits_split("classifier_train")
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in tqdm(range(args.classifier_epochs), desc="classifier", file=sys.stderr, disable=args.quiet):
        for idx in torch.randperm(len(labels), generator=gen).split(64):
            loss = F.cross_entropy(model(as_tokens(render(images[idx], gen))), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test_images, test_labels = load_digits_split("classifier_test")
    with torch.no_grad():
        test_gen = torch.Generator().manual_seed(1234)
        acc = (model(as_tokens(render(test_images, test_gen))).argmax(-1) == test_labels).float().mean().item()
        # reference statistics: every real digit, augmented as in training, 4 renderings each
        all_images = torch.cat([load_digits_split(s)[0] for s in ("generator", "classifier_train", "classifier_test")])
        feats = torch.cat([model.features(as_tokens(render(all_images, test_gen))) for _ in range(4)])
    mu, sigma = feature_stats(feats.numpy())
    log({"classifier_heldout_accuracy": round(acc, 4), "held_out_images": len(test_labels)})
    return {"model": model.state_dict(), "real_mu": torch.tensor(mu), "real_sigma": torch.tensor(sigma),
            "heldout_accuracy": acc}


def main(args):
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train_log.jsonl"
    log_path.write_text("")

    def log(record):
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    log({"args": vars(args), "torch": torch.__version__})
    start = time.time()
    tokenizer = IntensityTokenizer()
    tokenizer.save(out / "tokenizer.json")
    save_atomic(train_classifier(args, tokenizer, log), out / "digit_classifier.pt")
    train_generator(args, tokenizer, log)  # saves gpt_demo.pt every --save-every steps and at the end
    log({"seconds": round(time.time() - start, 1)})
    print(f"wrote {out}/gpt_demo.pt, tokenizer.json, digit_classifier.pt in {time.time() - start:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="checkpoints/demo", help="where the checkpoint, tokenizer and classifier go")
    p.add_argument("--steps", type=int, default=2000, help="generator optimisation steps")
    p.add_argument("--batch-size", type=int, default=24, help="generator batch size")
    p.add_argument("--save-every", type=int, default=250, help="also save the generator every N steps")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, warm-up then cosine)")
    p.add_argument("--classifier-epochs", type=int, default=40, help="classifier epochs over its split")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random in training")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    main(a)
