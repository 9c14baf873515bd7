"""MusicVAE-style model: BiLSTM encoder -> q(z|x) -> (conductor ->) autoregressive LSTM decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .representation import VOCAB_SIZE

START = VOCAB_SIZE  # extra embedding row: the "previous token" of step 0


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sequence, summed over latent dims: [B]."""
    return 0.5 * (mu.pow(2) + sigma.pow(2) - 1.0 - 2.0 * torch.log(sigma)).sum(-1)


def free_bits_kl(kl: torch.Tensor, free_bits: float) -> torch.Tensor:
    """MusicVAE's free bits: the first `free_bits` nats of each sequence's KL cost nothing."""
    return torch.clamp(kl - free_bits, min=0.0)


def _init_state(proj: nn.Linear, cond: torch.Tensor, layers: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a conditioning vector to (h0, c0) for every LSTM layer."""
    s = torch.tanh(proj(cond)).view(cond.shape[0], layers, 2, hidden)
    h = s[:, :, 0].transpose(0, 1).contiguous()
    c = s[:, :, 1].transpose(0, 1).contiguous()
    return h, c


class MusicVAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.hierarchical and cfg.seq_len % cfg.bar_len:
            raise ValueError("seq_len must be a multiple of bar_len for the hierarchical decoder")
        self.embed = nn.Embedding(VOCAB_SIZE + 1, cfg.embed_dim)
        self.encoder = nn.LSTM(cfg.embed_dim, cfg.enc_hidden, cfg.enc_layers, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * cfg.enc_hidden * cfg.enc_layers, cfg.z_dim)
        self.to_sigma = nn.Linear(2 * cfg.enc_hidden * cfg.enc_layers, cfg.z_dim)
        cond_dim = cfg.conductor_dim if cfg.hierarchical else cfg.z_dim
        if cfg.hierarchical:
            self.conductor_init = nn.Linear(cfg.z_dim, 2 * 2 * cfg.conductor_hidden)
            self.conductor = nn.LSTM(cfg.z_dim, cfg.conductor_hidden, 2, batch_first=True)
            self.conductor_out = nn.Linear(cfg.conductor_hidden, cfg.conductor_dim)
        self.dec_init = nn.Linear(cond_dim, cfg.dec_layers * 2 * cfg.dec_hidden)
        self.decoder = nn.LSTM(
            cfg.embed_dim + cond_dim,
            cfg.dec_hidden,
            cfg.dec_layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.dec_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.dec_hidden, VOCAB_SIZE)

    # ---- encoder -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens [B, T] -> mu, sigma [B, z]."""
        _, (h, _) = self.encoder(self.drop(self.embed(x.long())))
        h = h.transpose(0, 1).reshape(x.shape[0], -1)  # final states of both directions
        mu = self.to_mu(h)
        sigma = F.softplus(self.to_sigma(h)) + 1e-5
        return mu, sigma

    # ---- decoder -------------------------------------------------------------------------
    def bar_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """Conductor: z -> one embedding per bar [B, U, conductor_dim]."""
        cfg = self.cfg
        n_bars = cfg.seq_len // cfg.bar_len
        state = _init_state(self.conductor_init, z, 2, cfg.conductor_hidden)
        out, _ = self.conductor(z[:, None, :].expand(-1, n_bars, -1).contiguous(), state)
        return torch.tanh(self.conductor_out(out))

    def decode_logits(self, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, T, V] given the previous-token inputs [B, T] (START at 0)."""
        cfg = self.cfg
        emb = self.drop(self.embed(prev.long()))
        B, T = prev.shape
        if not cfg.hierarchical:
            state = _init_state(self.dec_init, z, cfg.dec_layers, cfg.dec_hidden)
            inp = torch.cat([emb, z[:, None, :].expand(-1, T, -1)], -1)
            out, _ = self.decoder(inp, state)
            return self.out(self.drop(out))
        # Each bar's decoding depends only on its bar embedding and its own inputs, so with
        # teacher forcing all bars run as one batch of B * n_bars short sequences.
        U, L = T // cfg.bar_len, cfg.bar_len
        c = self.bar_embeddings(z).reshape(B * U, -1)
        state = _init_state(self.dec_init, c, cfg.dec_layers, cfg.dec_hidden)
        inp = torch.cat([emb.reshape(B * U, L, -1), c[:, None, :].expand(-1, L, -1)], -1)
        out, _ = self.decoder(inp, state)
        return self.out(self.drop(out)).reshape(B, T, -1)

    @staticmethod
    def shift_right(x: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(x[:, :1], START)
        return torch.cat([start, x[:, :-1]], 1).long()

    def forward(self, x: torch.Tensor, sample_z: bool = True, prev: torch.Tensor | None = None):
        mu, sigma = self.encode(x)
        z = mu + sigma * torch.randn_like(mu) if sample_z else mu
        logits = self.decode_logits(z, self.shift_right(x) if prev is None else prev)
        return logits, mu, sigma

    @torch.no_grad()
    def generate(
        self,
        z: torch.Tensor,
        temperature: float = 1.0,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Autoregressive decoding from z: argmax (greedy) or sampling at a temperature. [B, T].

        The decoder LSTM is unrolled by hand here: per step, the input projection of the previous
        token is a table lookup and that of the conditioning vector is computed once per bar,
        which makes one-melody latency about half that of calling nn.LSTM step by step.
        """
        cfg = self.cfg
        B, T = z.shape[0], cfg.seq_len
        z = z.float()
        out = torch.empty(B, T, dtype=torch.long, device=z.device)
        prev = torch.full((B,), START, dtype=torch.long, device=z.device)
        if cfg.hierarchical:
            conds = self.bar_embeddings(z)
            L = cfg.bar_len
        else:
            conds, L = z[:, None, :], T
        E, H = cfg.embed_dim, cfg.dec_hidden
        dec = self.decoder
        w_ih = [getattr(dec, f"weight_ih_l{k}") for k in range(cfg.dec_layers)]
        w_hh_t = [getattr(dec, f"weight_hh_l{k}").t().contiguous() for k in range(cfg.dec_layers)]
        bias = [getattr(dec, f"bias_ih_l{k}") + getattr(dec, f"bias_hh_l{k}") for k in range(cfg.dec_layers)]
        w_ih_t = [w.t().contiguous() for w in w_ih]
        sample = not (greedy or temperature <= 0)
        token_gates = self.embed.weight @ w_ih[0][:, :E].t()  # [V+1, 4H]
        for u in range(conds.shape[1]):
            c = conds[:, u]
            h0, c0 = _init_state(self.dec_init, c, cfg.dec_layers, H)
            hs, cs = list(h0.unbind(0)), list(c0.unbind(0))
            cond_gates = torch.addmm(bias[0], c, w_ih[0][:, E:].t())  # constant over the bar
            if sample:
                # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T),
                # with the noise for the whole bar drawn at once (multinomial costs ~0.3 ms a call).
                u01 = torch.rand(L, B, VOCAB_SIZE, generator=generator, device=z.device).clamp_(1e-10, 1.0)
                gumbel = -torch.log(-torch.log(u01))
            for i in range(L):
                x = token_gates[prev] + cond_gates
                for k in range(cfg.dec_layers):
                    gates = x if k == 0 else torch.addmm(bias[k], hs[k - 1], w_ih_t[k])
                    gates = gates + hs[k] @ w_hh_t[k]
                    gi, gf, gg, go = gates.chunk(4, 1)
                    cs[k] = torch.sigmoid(gf) * cs[k] + torch.sigmoid(gi) * torch.tanh(gg)
                    hs[k] = torch.sigmoid(go) * torch.tanh(cs[k])
                logits = self.out(hs[-1])
                prev = (logits / temperature + gumbel[i]).argmax(-1) if sample else logits.argmax(-1)
                out[:, u * L + i] = prev
        return out


def vae_loss(
    logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, beta: float, free_bits: float
) -> dict[str, torch.Tensor]:
    """Reconstruction NLL summed over steps + beta * free-bits KL, both averaged over the batch."""
    x = x.long()
    nll_tok = F.cross_entropy(logits.float().transpose(1, 2), x, reduction="none")  # [B, T]
    recon = nll_tok.sum(1)
    kl = kl_divergence(mu.float(), sigma.float())
    loss = (recon + beta * free_bits_kl(kl, free_bits)).mean()
    acc = (logits.argmax(-1) == x).float().mean()
    return {"loss": loss, "nll_per_token": nll_tok.mean(), "kl": kl.mean(), "accuracy": acc}
