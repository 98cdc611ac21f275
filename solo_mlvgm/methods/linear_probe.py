"""Linear evaluation on a frozen backbone: features are computed once, then a linear layer is trained.

Features come from the backbone in eval mode on un-augmented, normalised images and are standardised with
the training split's statistics, so the probe converges in seconds on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from solo_mlvgm.views.pixel import normalize


@torch.no_grad()
def extract_features(backbone: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Backbone features of [0, 1] images, in eval mode, on the backbone's device; returned on the CPU."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    feats = [
        backbone(normalize(images[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(images), batch_size)
    ]
    backbone.train(was_training)
    return torch.cat(feats)


def topk_accuracy(logits: Tensor, targets: Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hits = (logits.topk(k, dim=1).indices == targets[:, None]).any(dim=1)
    return 100.0 * hits.float().mean().item()


def train_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.01,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on features and return top-1/top-5 (percent) on both splits."""
    mean, std = train_x.mean(0, keepdim=True), train_x.std(0, keepdim=True).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    batch_size = min(batch_size, len(train_x))  # a small split still trains
    rng = torch.Generator().manual_seed(seed)
    # The probe's init depends on ``seed`` alone, not on what ran before (pretrained and random probes
    # start alike).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * max(1, len(train_x) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=rng)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(probe(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    with torch.no_grad():
        train_logits, test_logits = probe(train_x), probe(test_x)
    return {
        "top1": topk_accuracy(test_logits, test_y, 1),
        "top5": topk_accuracy(test_logits, test_y, 5),
        "train_top1": topk_accuracy(train_logits, train_y, 1),
    }


def probe_backbone(
    backbone: nn.Module,
    splits: tuple[Tensor, Tensor, Tensor, Tensor, int],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
) -> dict[str, float]:
    """The linear probe of a frozen backbone on (train images, labels, test images, labels, classes)."""
    train_x, train_y, test_x, test_y, k = splits
    return train_linear_probe(
        extract_features(backbone, train_x),
        train_y,
        extract_features(backbone, test_x),
        test_y,
        k,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        weight_decay=weight_decay,
        seed=seed,
    )
