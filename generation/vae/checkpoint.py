"""The one place that says what a checkpoint file contains.

A checkpoint is a plain dict saved with torch.save and read with torch.load(weights_only=True),
so loading never unpickles arbitrary objects:

    {
      "format": "refrain-musicvae",   # refuses files that are not ours
      "version": 1,
      "config": {...},                # ModelConfig.to_dict(): only str/int/float/bool
      "state_dict": {...},            # model weights
      "attributes": {"names": [...], "vectors": Tensor[n_attr, z_dim]},   # optional
      "metrics": {...},               # optional, small JSON-able numbers
      "train_state": {...},           # optional, resume only: optimizer, step, epoch, RNG, best validation
                                      # accuracy and (when not these weights) the best epoch's state_dict
    }
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig
from .model import MusicVAE

FORMAT = "refrain-musicvae"
VERSION = 1


class CheckpointError(ValueError):
    """The file is missing, unreadable, or not a Refrain MusicVAE checkpoint."""


def save_checkpoint(
    path: str | Path,
    model: MusicVAE,
    *,
    attributes: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write atomically (temp file, then rename); `half` stores weights in fp16 to halve the size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu() for k, v in model.state_dict().items()
    }
    blob: dict[str, Any] = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "state_dict": state}
    if attributes is not None:
        blob["attributes"] = attributes
    if metrics is not None:
        blob["metrics"] = metrics
    if train_state is not None:
        blob["train_state"] = train_state
    return _save_atomically(blob, path)


def _load_blob(path: str | Path, formats: tuple[str, ...], what: str) -> dict[str, Any]:
    """The checkpoint dict, read with weights_only (no arbitrary unpickling), of one of our formats."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, disallowed globals
        raise CheckpointError(f"{path} is not a loadable Refrain checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") not in formats:
        tag = formats[0] if len(formats) == 1 else " or ".join(formats)
        raise CheckpointError(f"{path} is not a Refrain {what} (missing format tag {tag!r})")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {blob.get('version')}, this code reads {VERSION}")
    return blob


def _save_atomically(blob: dict[str, Any], path: Path) -> Path:
    """torch.save to a temp file beside `path`, then rename: a reader never sees half a checkpoint."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    return _load_blob(path, (FORMAT,), "MusicVAE checkpoint")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[MusicVAE, dict[str, Any]]:
    """Model in eval mode (float32) plus the raw checkpoint dict."""
    blob = read_checkpoint(path)
    cfg = ModelConfig.from_dict(blob["config"])
    model = _load_weights(MusicVAE(cfg), blob, path)
    return model.to(device).eval(), blob


def _load_weights(module: torch.nn.Module, blob: dict[str, Any], path: str | Path) -> Any:
    """`module` with the checkpoint's weights (in float32); CheckpointError if they do not fit its config."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match its config: {exc}") from exc
    return module


# ---- the latent-sequence prior (prior.py) --------------------------------------------------------
# Same conventions, its own tag, so neither loader accepts the other's files:
#   {"format": "refrain-latent-prior", "version": 1, "config": PriorConfig.to_dict(),
#    "state_dict": {...} (fp16 when saved with half=True; z_mean/z_std included),
#    "vae": file name of the 2-bar VAE whose latents it models, "metrics": {...} (optional)}
PRIOR_FORMAT = "refrain-latent-prior"


def save_prior(path: str | Path, prior, *, vae: str, metrics: dict[str, Any] | None = None, half: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if half and v.is_floating_point() and not k.startswith("z_") else v).detach().cpu()
        for k, v in prior.state_dict().items()
    }
    blob = {"format": PRIOR_FORMAT, "version": VERSION, "config": prior.cfg.to_dict(), "state_dict": state, "vae": vae}
    if metrics is not None:
        blob["metrics"] = metrics
    return _save_atomically(blob, path)


def load_prior(path: str | Path, device: str | torch.device = "cpu"):
    """(LatentPrior in eval mode, float32; the raw checkpoint dict). Refuses anything not tagged as ours."""
    from .prior import LatentPrior, PriorConfig

    blob = _load_blob(path, (PRIOR_FORMAT,), "latent prior")
    prior = _load_weights(LatentPrior(PriorConfig.from_dict(blob["config"])), blob, path)
    return prior.to(device).eval(), blob


def set_prior_metrics(path: str | Path, metrics: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> Path:
    """Merge `metrics` into a prior checkpoint's metrics (the settings it is served with) and `state`
    into its weights (e.g. a codebook's meters, computed after training), atomically."""
    blob = _load_blob(path, (PRIOR_FORMAT,), "latent prior")
    blob["metrics"] = {**(blob.get("metrics") or {}), **metrics}
    blob["state_dict"] = {**blob["state_dict"], **{k: v.detach().cpu() for k, v in (state or {}).items()}}
    return _save_atomically(blob, Path(path))


MUSICVAE_KIND, PRIOR_KIND = "musicvae", "latent-prior"


def checkpoint_summary(path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(kind, config, metrics) of either kind of checkpoint, read safely: a MusicVAE (one window of
    melody) or a latent prior (long tunes as sequences of 2-bar latents). Refuses anything else."""
    blob = _load_blob(path, (FORMAT, PRIOR_FORMAT), "checkpoint")
    if blob["format"] == FORMAT:
        return MUSICVAE_KIND, dict(blob["config"]), dict(blob.get("metrics") or {})
    config = {**dict(blob["config"]), "vae": blob.get("vae", "")}
    return PRIOR_KIND, config, dict(blob.get("metrics") or {})
