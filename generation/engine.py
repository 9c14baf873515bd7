"""Turn generation requests into melodies, many requests in one batched decode.

Plain PyTorch over `generation.vae` (no Django): the Celery task hands it the jobs it claimed,
it returns one token array per job. Requests that share a temperature are decoded in a single
forward pass, so throughput grows with load instead of staying one job at a time.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import torch

from generation.vae.sample import MelodyVAE

KINDS = ("sample", "similar", "interpolate", "steer")


@dataclasses.dataclass(frozen=True)
class LatentRequest:
    """What one job asks for, with the latent anchors of its parent tracks already encoded."""

    kind: str
    count: int
    temperature: float
    seed: int
    anchors: tuple[np.ndarray, ...] = ()
    spread: float = 0.3
    attribute: str = ""
    amount: float = 0.0


@dataclasses.dataclass
class BatchStats:
    jobs: int = 0
    melodies: int = 0
    forward_passes: int = 0


def latent_targets(vae: MelodyVAE, request: LatentRequest) -> torch.Tensor:
    """The z of each melody a request asks for: [count, z_dim]."""
    anchors = [torch.as_tensor(a, dtype=torch.float32, device=vae.device) for a in request.anchors]
    if request.kind == "sample":
        return vae.sample_z(request.count, seed=request.seed)
    if request.kind == "similar":
        return vae.similar(anchors[0], request.count, spread=request.spread, seed=request.seed)
    if request.kind == "interpolate":
        # The two ends are the parent tracks themselves: keep only the points in between.
        return vae.interpolate(anchors[0], anchors[1], request.count + 2)[1:-1]
    if request.kind == "steer":
        # A ladder of amounts, so several tracks show the attribute growing step by step.
        amounts = [request.amount * (i + 1) / request.count for i in range(request.count)]
        return torch.stack([vae.steer(anchors[0], request.attribute, amount) for amount in amounts])
    raise ValueError(f"unknown kind {request.kind!r}; choose one of {KINDS}")


def decode_requests(vae: MelodyVAE, requests: list[LatentRequest], stats: BatchStats | None = None) -> list[np.ndarray]:
    """Decode every request's melodies; one forward pass per distinct temperature."""
    stats = stats if stats is not None else BatchStats()
    targets = [latent_targets(vae, request) for request in requests]
    groups: dict[float, list[int]] = defaultdict(list)
    for index, request in enumerate(requests):
        groups[float(request.temperature)].append(index)
    results: list[np.ndarray | None] = [None] * len(requests)
    for temperature, members in groups.items():
        z = torch.cat([targets[i] for i in members])
        seed = requests[members[0]].seed  # decoding noise: seeded by the group's first job
        tokens = vae.decode(z, temperature=temperature, seed=seed)
        stats.forward_passes += 1
        offset = 0
        for i in members:
            n = len(targets[i])
            results[i] = tokens[offset : offset + n]
            offset += n
    stats.jobs += len(requests)
    stats.melodies += sum(len(t) for t in targets)
    return [r for r in results if r is not None]
