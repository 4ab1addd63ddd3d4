"""InterFaceGAN boundaries (Shen et al. 2020): linear SVMs in W over sampled, classifier-scored latents.

For each attribute the generator's samples are scored by :class:`manipulate.attributes.AttributeClassifier`;
the top and bottom ``ratio`` of the samples by score (predicted years for age) become the two
classes of a linear SVM on ``w``, and the SVM's unit normal is the editing direction, oriented so
that **positive = more of the attribute** (older for ``"age"``, male for ``"male"`` and ``"gender"``).
A held-out part of the chosen samples measures how well the boundary separates them
(``info["svm_val_accuracy"]``).

Per-layer boundaries (``per_layer=True``) use style-mixed samples as the generator saw them in
training: ``ws[:, :c]`` from one ``w`` and ``ws[:, c:]`` from another, crossover ``c`` uniform in
``1 .. num_ws - 1``. For layer ``k`` an SVM is fitted on ``ws[:, k]`` alone against the same
scores; the direction ``"<name>@L<k>"`` applies to layer ``k`` only, and its validation accuracy
says how much that layer's latent decides the attribute (coarse layers for pose-like attributes,
fine layers for colours). This costs one extra batch of ``layer_samples`` syntheses, not one per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ganbrush_core.devices import on_device
from manipulate.attributes import AGE, AttributeClassifier, attribute_scores, load_classifier
from manipulate.directions import Direction, LayerRange, check_layers
from stylegan_ops.networks import Generator, sample_w

SOURCE = "interfacegan"


@torch.no_grad()
def score_latents(G: Generator, clf: AttributeClassifier, ws: torch.Tensor, batch: int = 128,
                  progress: bool = True) -> dict[str, torch.Tensor]:
    """Synthesise ``ws`` ``[N, num_ws, w_dim]`` (constant noise) in batches and score the
    images with ``clf``; returns CPU ``{name: [N]}`` (logits; years for age)."""
    parts: list[dict[str, torch.Tensor]] = []
    device = G.w_avg.device
    for chunk in tqdm(ws.split(batch), desc="interfacegan: scoring samples", unit="batch", disable=not progress):
        images = G.synthesis(chunk.to(device), noise_mode="const").clamp(-1, 1)
        parts.append(attribute_scores(clf, images, batch=batch))
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


def fit_boundary(latents: np.ndarray, scores: np.ndarray, ratio: float = 0.3, val_fraction: float = 0.2,
                 seed: int = 0, svm_c: float = 1.0) -> tuple[np.ndarray, dict]:
    """Linear SVM between the top and bottom ``ratio`` of ``latents`` ``[N, D]`` by ``scores``
    ``[N]``. Returns the unit normal ``[D]`` pointing towards high scores, and an info dict
    (validation and training accuracy, class sizes, the score cut-offs, how the projection on the
    normal correlates with the score over all samples)."""
    from sklearn.svm import LinearSVC

    if not 0 < ratio <= 0.5:
        raise ValueError(f"ratio must be in (0, 0.5], got {ratio}")
    n = len(scores)
    k = int(round(ratio * n))
    n_val = int(round(2 * k * val_fraction))
    if k < 4 or n_val < 2 or 2 * k - n_val < 4:
        raise ValueError(f"{n} samples give too few examples per class (ratio {ratio}, validation {val_fraction}); "
                         "use more samples")
    order = np.argsort(scores, kind="stable")
    chosen = np.concatenate([order[:k], order[-k:]])
    labels = np.concatenate([np.zeros(k, np.int64), np.ones(k, np.int64)])  # 1 = high score
    # The SVM's normal does not change under translation and a global scale; both only help the solver.
    centre = latents.mean(0)
    spread = float(latents.std()) or 1.0
    x = (latents[chosen] - centre) / spread
    perm = np.random.default_rng(seed).permutation(2 * k)
    val, train = perm[:n_val], perm[n_val:]
    # The primal solver: far faster than the dual when samples outnumber dimensions (12k x 256 here).
    svm = LinearSVC(C=svm_c, dual=False, max_iter=20_000, random_state=seed)
    svm.fit(x[train], labels[train])
    normal = svm.coef_[0].astype(np.float64)
    if svm.classes_[1] != 1:  # coef_ points towards classes_[1]
        normal = -normal
    normal /= np.linalg.norm(normal)
    projection = (latents - centre) @ normal
    info = {"svm_val_accuracy": float(svm.score(x[val], labels[val])),
            "svm_train_accuracy": float(svm.score(x[train], labels[train])),
            "positives": int(k), "negatives": int(k), "samples": int(n), "ratio": float(ratio),
            "score_low_cut": float(scores[order[k - 1]]), "score_high_cut": float(scores[order[-k]]),
            "score_correlation": float(np.corrcoef(projection, scores)[0, 1])}
    return normal, info


def _mixed_ws(G: Generator, num: int, seed: int) -> torch.Tensor:
    """``num`` style-mixed ``ws`` (one crossover per sample, as in StyleGAN2 training)."""
    first = sample_w(G, num, seed + 1)
    second = sample_w(G, num, seed + 2)
    crossover = torch.randint(1, G.num_ws, (num, 1), generator=torch.Generator().manual_seed(seed + 3))
    use_first = (torch.arange(G.num_ws)[None, :] < crossover).to(first.device)[..., None]
    return torch.where(use_first, first[:, None], second[:, None])


def _check_names(clf: AttributeClassifier, names: Sequence[str] | None) -> tuple[str, ...]:
    if names is None:
        return tuple(clf.names)
    unknown = [n for n in names if n not in clf.names]
    if unknown or not names:
        raise ValueError(f"unknown attribute(s) {', '.join(unknown) or '(none given)'}; the classifier scores "
                         f"{', '.join(clf.names)}")
    return tuple(dict.fromkeys(names))


@torch.no_grad()
def interfacegan(G: Generator, clf: AttributeClassifier | None = None, names: Sequence[str] | None = None,
                 samples: int = 20_000, seed: int = 0, layers: LayerRange | None = None, per_layer: bool = False,
                 ratio: float = 0.3, val_fraction: float = 0.2, layer_samples: int | None = None,
                 batch: int = 128, progress: bool = True, device: str | torch.device | None = None
                 ) -> list[Direction]:
    """InterFaceGAN boundaries of ``G`` in W for each of ``names`` (default: every score of
    ``clf``; ``clf`` defaults to the shipped classifier), from ``samples`` seeded samples.

    Each :class:`Direction` is named after its score (``"smiling"``, ``"age"``, ...), points
    towards more of the attribute, applies to ``layers`` (default all) and has ``scale`` = the
    standard deviation of the sampled ``w`` along it. With ``per_layer`` the list also holds
    ``"<name>@L<k>"`` for each layer ``k`` in ``layers`` (see the module docstring), fitted on
    ``layer_samples`` (default ``samples``) style-mixed samples. The generator and ``clf`` run
    on ``device`` (``None``: ``G``'s); the boundaries are fitted on the CPU.
    """
    if samples < 10:
        raise ValueError(f"samples must be at least 10, got {samples}")
    layers = check_layers(G, layers)
    G = on_device(G, device)
    clf = load_classifier(device=G.w_avg.device) if clf is None else on_device(clf, G.w_avg.device)
    names = _check_names(clf, names)

    w = sample_w(G, samples, seed)
    scores = score_latents(G, clf, w[:, None].expand(-1, G.num_ws, -1), batch, progress)
    w_np = w.double().cpu().numpy()
    directions = []
    for name in names:
        normal, info = fit_boundary(w_np, scores[name].double().numpy(), ratio, val_fraction, seed)
        info["score_unit"] = "years" if name == AGE else "logit"
        scale = float(((w_np - w_np.mean(0)) @ normal).std())
        directions.append(Direction(name, torch.from_numpy(normal).float(), layers, scale, SOURCE, info))

    if per_layer:
        mixed = _mixed_ws(G, layer_samples or samples, seed)
        mixed_scores = score_latents(G, clf, mixed, batch, progress)
        for name in names:
            for k in range(*layers):
                latents = mixed[:, k].double().cpu().numpy()
                normal, info = fit_boundary(latents, mixed_scores[name].double().numpy(), ratio, val_fraction, seed)
                info.update(score_unit="years" if name == AGE else "logit", mixing="crossover")
                scale = float(((latents - latents.mean(0)) @ normal).std())
                directions.append(Direction(f"{name}@L{k}", torch.from_numpy(normal).float(), (k, k + 1), scale,
                                            SOURCE, info))
    return directions
