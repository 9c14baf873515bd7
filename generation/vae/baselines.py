"""Two baselines without a latent space, for the sample-quality comparison in evaluate.py.

- NGramModel: a Markov chain over tokens with back-off to shorter contexts where a context
  was never seen in training.
- LSTMLanguageModel: the decoder without z, trained with teacher forcing on the same windows.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import transpose_batch
from .representation import VOCAB_SIZE

START = VOCAB_SIZE
BASE = VOCAB_SIZE + 1


class NGramModel:
    def __init__(self, order: int = 4):
        self.order = order
        self.tables: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []

    def fit(self, windows: np.ndarray) -> NGramModel:
        w = np.asarray(windows, dtype=np.int64)
        n, T = w.shape
        padded = np.concatenate([np.full((n, self.order), START, dtype=np.int64), w], 1)
        nxt = w.ravel()
        self.tables = []
        for o in range(self.order + 1):
            key = np.zeros(n * T, dtype=np.int64)
            for i in range(o):  # context = the o tokens before each position
                key = key * BASE + padded[:, self.order - o + i : self.order - o + i + T].ravel()
            u, counts = np.unique(key * VOCAB_SIZE + nxt, return_counts=True)
            ctx, tok = u // VOCAB_SIZE, u % VOCAB_SIZE
            cuts = np.flatnonzero(np.diff(ctx)) + 1
            table = {}
            for c, t, k in zip(np.split(ctx, cuts), np.split(tok, cuts), np.split(counts, cuts)):
                table[int(c[0])] = (t, k / k.sum())
            self.tables.append(table)
        return self

    def sample(self, n: int, length: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.zeros((n, length), dtype=np.int64)
        for r in range(n):
            hist = [START] * self.order
            for i in range(length):
                for o in range(self.order, -1, -1):
                    key = 0
                    for tok in hist[len(hist) - o :] if o else []:
                        key = key * BASE + tok
                    if key in self.tables[o]:
                        toks, p = self.tables[o][key]
                        break
                if temperature != 1.0:
                    p = p ** (1.0 / temperature)
                    p = p / p.sum()
                out[r, i] = rng.choice(toks, p=p)
                hist.append(int(out[r, i]))
        return out


class LSTMLanguageModel(nn.Module):
    def __init__(self, embed_dim: int = 32, hidden: int = 256, layers: int = 1):
        super().__init__()
        self.embed = nn.Embedding(VOCAB_SIZE + 1, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, VOCAB_SIZE)

    def forward(self, prev: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(prev))
        return self.out(h)

    def fit(
        self,
        windows: torch.Tensor,
        minutes: float,
        batch_size: int = 64,
        lr: float = 2e-3,
        transpose: int = 5,
        seed: int = 0,
    ) -> dict:
        torch.manual_seed(seed)
        dev = next(self.parameters()).device
        windows = windows.to(dev)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        t0, steps = time.time(), 0
        self.train()
        bar = tqdm(desc="LSTM LM baseline", mininterval=2.0)
        while time.time() - t0 < minutes * 60:
            idx = torch.randint(0, len(windows), (batch_size,), device=dev)
            x = transpose_batch(windows[idx], transpose)
            prev = torch.cat([torch.full_like(x[:, :1], START), x[:, :-1]], 1)
            loss = F.cross_entropy(self(prev).transpose(1, 2), x)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        self.eval()
        return {"steps": steps, "minutes": (time.time() - t0) / 60, "final_loss": float(loss.detach())}

    @torch.no_grad()
    def sample(self, n: int, length: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
        dev = next(self.parameters()).device
        g = torch.Generator(device=dev).manual_seed(seed)
        prev = torch.full((n, 1), START, dtype=torch.long, device=dev)
        state = None
        out = torch.empty(n, length, dtype=torch.long, device=dev)
        for i in range(length):
            h, state = self.lstm(self.embed(prev), state)
            probs = torch.softmax(self.out(h[:, -1]) / temperature, -1)
            prev = torch.multinomial(probs, 1, generator=g)
            out[:, i] = prev[:, 0]
        return out.cpu().numpy()
