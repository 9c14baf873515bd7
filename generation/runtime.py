"""The model in a worker process: loaded once per process and model version, then reused.

Jobs name the model version they were created under, so activating another version takes effect
at the next job without restarting workers: its checkpoint is loaded on first use.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from generation.models import ModelVersion
from generation.selectors import model_version_checkpoint_file
from generation.services import model_version_is_longform

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded: dict[tuple[int, str], object] = {}  # (model version id, checkpoint path) -> MelodyVAE
loads = 0  # how many checkpoints this process has loaded (observable in tests and logs)
KEEP = 2  # versions kept in memory: the active one and the one before (jobs still queued for it)


def vae_for(model_version: ModelVersion):
    """The model of a model version, loaded once per process: a MelodyVAE (one window of melody; on
    CUDA when available, or GENERATION_DEVICE) or, for a latent-prior checkpoint, LongformJobs
    (whole tunes as sequences of 2-bar latents; CPU here, where it is measured)."""
    global loads
    with _lock:
        key = (model_version.pk, model_version.checkpoint_path)
        vae = _loaded.get(key)
        if vae is None:
            # torch is imported by workers only
            import torch

            if not torch.cuda.is_available():
                # Autoregressive decoding is hundreds of tiny ops per melody: extra intra-op threads
                # only spin and fight other processes (measured: 1 thread 0.08 s, 2 threads 7.5 s
                # for one 16-bar melody on this 2-core machine under load).
                torch.set_num_threads(settings.GENERATION_CPU_THREADS)
            path = model_version_checkpoint_file(model_version=model_version)
            if model_version_is_longform(model_version):
                from generation.vae.longform_jobs import LongformJobs

                vae = LongformJobs.load(path)
                where = "cpu"
            else:
                from generation.vae.sample import MelodyVAE

                fast = None if settings.GENERATION_GPU_DECODE == "off" else settings.GENERATION_GPU_DECODE
                vae = MelodyVAE.load(path, device=settings.GENERATION_DEVICE or None, fast_decode=fast)
                vae.model.eval()
                where = vae.device
            while len(_loaded) >= KEEP:
                _loaded.pop(next(iter(_loaded)))
            _loaded[key] = vae
            loads += 1
            logger.info("loaded model version %s from %s on %s", model_version.pk, path, where)
        return vae
