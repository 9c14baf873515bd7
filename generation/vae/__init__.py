"""MusicVAE-class latent model of monophonic melodies, in plain PyTorch (no Django import here).

representation  MIDI <-> tokens on a 16th-note grid
data            folder of MIDI files -> cached melodies -> split, windows, transposition
config          model/training configs as dataclasses (mel_2bar, mel_16bar, mel_tiny)
model           encoder, flat and hierarchical decoders, loss with free bits
train           training loop (python -m generation.vae.train)
evaluate        test-split metrics vs baselines (python -m generation.vae.evaluate)
baselines       n-gram Markov model and LSTM language model
metrics         MGEval-style overlap areas, scale consistency
attributes      attribute values and latent attribute vectors
checkpoint      what a checkpoint file contains; safe loading
sample          inference API: MelodyVAE.encode/sample/decode/interpolate/similar/steer
fast_decode     GraphDecoder: the whole decode replayed as one CUDA graph (bf16/fp32)

Long tunes as sequences of 2-bar latents (issue 11):
chunks          tune <-> bar-aligned chunks per meter, tie flags, the join rule, key of a tune
dedup           split by melody content (duplicates, transpositions, variants in one split)
latent_data     the corpus encoded once as latent sequences (python -m generation.vae.latent_data)
prior           LatentPrior: causal Transformer, copy pointer, Gaussian mixture over chunk latents
prior_train     training the prior on the latent cache (python -m generation.vae.prior_train)
longform        LongformComposer: encode / decode / sample / continue_from / infill (the API)
structure       repeat shares, phrase endings, degenerate tunes
two_sample      hand-made features + gradient-boosted classifier two-sample test
prior_evaluate  held-out evaluation of the composer (python -m generation.vae.prior_evaluate)
"""

from .checkpoint import CheckpointError
from .representation import MelodyError

__all__ = ["CheckpointError", "MelodyError"]
