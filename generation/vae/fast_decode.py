"""Fast melody decoding: the whole autoregressive decode of MusicVAE captured as one CUDA graph.

    from generation.vae.fast_decode import GraphDecoder
    decoder = GraphDecoder(model, batch_size=1, dtype=torch.bfloat16, temperature=0.5)
    tokens = decoder(z, generator=torch.Generator("cuda").manual_seed(0))   # [B, T] int64

Why: `MusicVAE.generate` launches about thirty small kernels per 16th-note step from Python, so
one 16-bar melody (256 steps) costs ~100 ms on a GPU that is idle nearly all of that time. Here the
whole decode (conductor, every bar, every step) is recorded once into a `torch.cuda.CUDAGraph` and
replayed with a single launch, and the per-step work is cut to about ten kernels (fused LSTM cell,
one gather for the token input, the bar's conditioning projected once per bar). In bf16 the large
batches also move half the bytes.

The math is that of `MusicVAE.generate`:
  * the previous token's input projection is a lookup in a precomputed [V+1, 4H] table;
  * the conditioning vector (z for flat models, the conductor's bar embedding for hierarchical
    ones) is projected once per bar, together with the layer-0 biases;
  * each decoder layer is a standard LSTM cell (gate order i, f, g, o);
  * sampling is Gumbel-max. argmax(logits / T + g) is the same draw as argmax(logits + T * g), so
    the noise buffer holds `out_bias + T * g` and one add per step turns the bias-free logits into
    scores. Logits and noise are added in float32 even for bf16 weights, so the sampling
    distribution is not quantised to bf16 steps; the noise is drawn OUTSIDE the graph from the
    caller's generator, which makes results reproducible with a seed.

Documented differences:
  * In float32 with greedy decoding and the eager path (`use_graph=False`, the default on CPU),
    tokens are bit-identical to `MusicVAE.generate(z, greedy=True)` for the same batch: the same
    operations run in the same order, and the conductor is the model's own `nn.LSTM`.
  * Inside a CUDA graph the conductor is unrolled by hand (`conductor="cells"`): that avoids
    relying on cuDNN's RNN being capturable. Same math, rounding differs by ~1e-7, which can flip an
    argmax only at near-exact ties. On CUDA the LSTM cell is the fused ATen kernel (fp32 gate math),
    so GPU tokens can differ from `generate` in the same rare way.
  * A call with fewer rows than the captured batch is padded with zero latent vectors (their
    outputs are dropped), so its cost is that of the full batch; more rows than the captured batch
    run in consecutive chunks of it. Noise is drawn for the whole captured batch, so a seed
    reproduces tokens for the same captured batch size (and device), not across sizes.
  * The decoder copies the model's weights when built; rebuild it after the weights change.
  * In bf16 the LSTM state (h and c) is rounded to bf16 every step, as any bf16 LSTM does.

No Django here: torch and the package's own modules only.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .model import START, MusicVAE
from .representation import VOCAB_SIZE

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)
CONDUCTOR_MODES = ("auto", "cells", "module")


# ---- weights ------------------------------------------------------------------------------------
@dataclass
class _StackWeights:
    """One multi-layer LSTM, laid out as `MusicVAE.generate` uses it, in the compute dtype.

    Layer 0's input projection is done by the caller (token table + conditioning, or the constant
    conductor input), so only layers >= 1 keep `w_ih_t`; `w_ih_t[0]` is None.
    """

    hidden: int
    w_ih_t: list[torch.Tensor | None]  # [in, 4H] per layer (None for layer 0)
    w_hh_t: list[torch.Tensor]  # [H, 4H]
    b_ih: list[torch.Tensor]  # [4H]
    b_hh: list[torch.Tensor]  # [4H]
    bias: list[torch.Tensor]  # b_ih + b_hh (summed in fp32, as generate does, then cast)

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, dtype: torch.dtype) -> _StackWeights:
        n = lstm.num_layers
        w_ih = [getattr(lstm, f"weight_ih_l{k}").detach() for k in range(n)]
        w_hh = [getattr(lstm, f"weight_hh_l{k}").detach() for k in range(n)]
        b_ih = [getattr(lstm, f"bias_ih_l{k}").detach() for k in range(n)]
        b_hh = [getattr(lstm, f"bias_hh_l{k}").detach() for k in range(n)]
        return cls(
            hidden=lstm.hidden_size,
            w_ih_t=[None] + [w.t().contiguous().to(dtype) for w in w_ih[1:]],
            w_hh_t=[w.t().contiguous().to(dtype) for w in w_hh],
            b_ih=[b.to(dtype) for b in b_ih],
            b_hh=[b.to(dtype) for b in b_hh],
            bias=[(bi + bh).to(dtype) for bi, bh in zip(b_ih, b_hh)],
        )


def _linear_weights(layer: nn.Linear, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return layer.weight.detach().to(dtype), layer.bias.detach().to(dtype)


# ---- the two optional CUDA kernels (module-level so tests can stand in for them on CPU) --------------
def _fused_lstm_cell(input_gates, hidden_gates, c, b_ih=None, b_hh=None):
    """ATen's fused LSTM cell: (h, c) from the two gate pre-activations [B, 4H] (+ optional 1-D biases)."""
    h_new, c_new, _workspace = torch.ops.aten._thnn_fused_lstm_cell(input_gates, hidden_gates, c, b_ih, b_hh)
    return h_new, c_new


def _mm_float32(a, b):
    """a @ b with bf16 operands written straight to float32 (no separate cast kernel)."""
    return torch.ops.aten.mm.dtype(a, b, torch.float32)


# ---- capability probes (CUDA) -----------------------------------------------------------------------
def _reference_cell(ig, hg, c, b_ih, b_hh):
    gates = ig.float() + hg.float() + b_ih.float() + b_hh.float()
    i, f, g, o = gates.chunk(4, 1)
    c_new = torch.sigmoid(f) * c.float() + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _probe_fused_cell(device: torch.device, dtype: torch.dtype) -> str | None:
    """None if ATen's fused LSTM cell kernel runs here and agrees with the plain formula, else why not.

    The fused kernel (what nn.LSTMCell uses on CUDA) does the gate sums and all nonlinearities in
    one launch instead of about nine; it is an internal op, hence the check before relying on it.
    """
    if device.type != "cuda":
        return "fused LSTM cell is a CUDA kernel"
    try:
        gen = torch.Generator().manual_seed(0)
        rows, hidden = 3, 8
        ig, hg = (torch.randn(rows, 4 * hidden, generator=gen) for _ in range(2))
        c = torch.randn(rows, hidden, generator=gen)
        b_ih, b_hh = (torch.randn(4 * hidden, generator=gen) for _ in range(2))
        args = [t.to(device=device, dtype=dtype) for t in (ig, hg, c, b_ih, b_hh)]
        tol = 1e-5 if dtype == torch.float32 else 3e-2
        zero = torch.zeros_like(args[3])
        for with_bias in (True, False):  # layers >= 1 pass their biases; layer 0 has them in its input
            call_args = args if with_bias else args[:3]
            hy, cy = _fused_lstm_cell(*call_args)
            ref_h, ref_c = _reference_cell(*args[:3], *(args[3:] if with_bias else (zero, zero)))
            err = max((hy.float() - ref_h).abs().max().item(), (cy.float() - ref_c).abs().max().item())
            if not err <= tol:
                return f"fused LSTM cell (bias={with_bias}) disagrees with the reference by {err:.3g}"
        return None
    except Exception as exc:  # noqa: BLE001 - op missing in this build, dtype not dispatched, ...
        return f"{type(exc).__name__}: {exc}"


def _probe_mm_float_out(h: torch.Tensor, w_t: torch.Tensor) -> str | None:
    """None if mm takes these bf16 operands and writes float32 logits directly (no cast kernel), else why not.

    Probed with the real output weight (layout included) and a hidden state of the real shape.
    """
    if h.device.type != "cuda" or h.dtype == torch.float32:
        return "only used for bf16 on CUDA"
    try:
        out = _mm_float32(h, w_t)
        ref = h.float() @ w_t.float()
        if out.dtype != torch.float32 or out.shape != ref.shape:
            return f"mm with out_dtype returned {out.dtype} {list(out.shape)}"
        err = (out - ref).abs().max().item()
        scale = max(ref.abs().max().item(), 1.0)
        if not err <= 1e-2 * scale:
            return f"mm with out_dtype disagrees by {err:.3g}"
        return None
    except Exception as exc:  # noqa: BLE001 - a probe: any failure means the fast path is unavailable
        return f"{type(exc).__name__}: {exc}"


def _settle_after_failed_capture() -> None:
    """Drain an error a failed capture may leave behind, so it does not surface in the next CUDA call."""
    for _ in range(2):
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - draining whatever a failed capture left behind
            pass


# ---- the decoder ------------------------------------------------------------------------------------
class GraphDecoder:
    """Decode latent vectors to melodies, replaying one CUDA graph per call (eagerly on CPU).

    Arguments:
        model: a MusicVAE (its weights are copied now, in `dtype`).
        batch_size: rows decoded per replay; smaller calls are padded, larger ones chunked.
        dtype: torch.bfloat16 or torch.float32 for weights and LSTM state.
        temperature, greedy: as in MusicVAE.generate (temperature <= 0 also means greedy).
        use_graph: None = capture on CUDA, falling back to eager (with a warning, reason in
            `fallback_reason`) if capture fails; True = capture or raise; False = always eager.
        conductor: "module" runs the model's nn.LSTM conductor (exact match with generate, eager
            only); "cells" the hand-unrolled one (graph-safe); "auto" = cells when capturing.
        warmup_runs: eager decodes on a side stream before capture (lazy cuBLAS/allocator setup
            must not happen while capturing).
    """

    def __init__(
        self,
        model: MusicVAE,
        batch_size: int,
        dtype: torch.dtype = torch.bfloat16,
        temperature: float = 1.0,
        greedy: bool = False,
        *,
        use_graph: bool | None = None,
        conductor: str = "auto",
        warmup_runs: int = 2,
    ):
        if not isinstance(model, MusicVAE):
            raise TypeError(f"model must be a MusicVAE, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float32, got {dtype}")
        try:
            temperature = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"temperature must be a number, got {temperature!r}") from None
        if temperature != temperature or temperature in (float("inf"), float("-inf")):
            raise ValueError(f"temperature must be finite, got {temperature}")
        if conductor not in CONDUCTOR_MODES:
            raise ValueError(f"conductor must be one of {CONDUCTOR_MODES}, got {conductor!r}")
        if warmup_runs < 1:
            raise ValueError("warmup_runs must be >= 1 (capture needs a warmed-up stream)")

        self.model = model
        self.cfg = model.cfg
        self.device = next(model.parameters()).device
        if use_graph and self.device.type != "cuda":
            raise ValueError(f"use_graph=True needs the model on a CUDA device; it is on {self.device}")
        will_capture = self.device.type == "cuda" and use_graph is not False
        if conductor == "module" and will_capture:
            raise ValueError('conductor="module" cannot be captured in a CUDA graph; use "cells" or use_graph=False')
        self.batch_size = batch_size
        self.dtype = dtype
        self.temperature = temperature
        self.sample = not (greedy or temperature <= 0)
        self.conductor = conductor if conductor != "auto" else ("cells" if will_capture else "module")
        self.seq_len = self.cfg.seq_len
        self.steps_per_bar = self.cfg.bar_len if self.cfg.hierarchical else self.cfg.seq_len

        # Implementation choices, probed once, reported by describe() (the bench records them).
        with torch.no_grad():
            self._prepare_weights()
            self._allocate_buffers()
            fused_reason = _probe_fused_cell(self.device, dtype)
            probe_h = torch.randn(2, self.cfg.dec_hidden, generator=torch.Generator().manual_seed(0))
            mm_reason = _probe_mm_float_out(probe_h.to(self.device, dtype), self.out_w_t)
        self.fused_cell = fused_reason is None
        self.mm_float_out = mm_reason is None
        self.probe_notes = {"fused_cell": fused_reason, "mm_float_out": mm_reason}

        self.graph: torch.cuda.CUDAGraph | None = None
        self.capture_seconds: float | None = None
        self.fallback_reason: str | None = None
        if will_capture:
            t0 = time.perf_counter()
            error = self._try_capture(warmup_runs)
            if error is not None and (self.fused_cell or self.mm_float_out):
                # The optional fast ops are the likeliest culprits: retry once with plain ops only.
                self.fused_cell = self.mm_float_out = False
                self.probe_notes["disabled_after_capture_error"] = f"{type(error).__name__}: {error}"
                error = self._try_capture(warmup_runs)
            if error is None:
                self.capture_seconds = time.perf_counter() - t0
            else:
                if use_graph:
                    raise RuntimeError(f"CUDA graph capture failed: {type(error).__name__}: {error}") from error
                self.fallback_reason = f"capture failed: {type(error).__name__}: {error}"
                warnings.warn(f"GraphDecoder runs eagerly: {self.fallback_reason}", RuntimeWarning, stacklevel=2)
                if conductor == "auto":
                    self.conductor = "module"
        elif self.device.type != "cuda":
            self.fallback_reason = "no CUDA device: the same code runs eagerly"

    # ---- setup ----------------------------------------------------------------------------------
    def _prepare_weights(self) -> None:
        """Copy every weight the decode needs into `dtype`, in the layouts MusicVAE.generate uses."""
        m, cfg, dt = self.model, self.cfg, self.dtype
        E = cfg.embed_dim
        self.dec = _StackWeights.from_lstm(m.decoder, dt)
        w_ih0 = m.decoder.weight_ih_l0.detach()
        # Token part of layer 0's input projection: a table lookup per step (row START = step 0).
        self.token_gates = (m.embed.weight.detach() @ w_ih0[:, :E].t()).to(dt)  # [V+1, 4H]
        # Conditioning part: a strided view, exactly as generate passes it to addmm.
        self.w_cond_t = w_ih0.to(dt)[:, E:].t()  # [cond_dim, 4H]
        self.dec_init_w, self.dec_init_b = _linear_weights(m.dec_init, dt)
        self.out_w, self.out_b = _linear_weights(m.out, dt)
        self.out_w_t = self.out_w.t()  # [H, V]
        self.out_w32_t = m.out.weight.detach().float().t()
        self.out_b32 = m.out.bias.detach().float()
        if cfg.hierarchical:
            self.cond = _StackWeights.from_lstm(m.conductor, dt)
            self.cond_w_ih0_t = m.conductor.weight_ih_l0.detach().t().contiguous().to(dt)
            self.cond_init_w, self.cond_init_b = _linear_weights(m.conductor_init, dt)
            self.cond_out_w, self.cond_out_b = _linear_weights(m.conductor_out, dt)

    def _allocate_buffers(self) -> None:
        """Static tensors: a captured graph reads and writes these exact addresses on every replay."""
        B, T, dev = self.batch_size, self.seq_len, self.device
        self.z_buf = torch.zeros(B, self.cfg.z_dim, device=dev)
        self.out_buf = torch.zeros(T, B, dtype=torch.long, device=dev)  # [T, B]: each step writes a contiguous row
        self.start_tokens = torch.full((B,), START, dtype=torch.long, device=dev)
        # Gumbel noise already scaled by the temperature, plus the output bias; fp32 whatever `dtype`.
        self.noise_buf = torch.zeros(T, B, VOCAB_SIZE, device=dev) if self.sample else None

    def _try_capture(self, warmup_runs: int) -> Exception | None:
        """Capture into self.graph; on failure leave it None and return the error."""
        try:
            self.graph = self._capture(warmup_runs)
            return None
        except Exception as exc:  # noqa: BLE001 - a capture that fails for any reason falls back to the eager loop
            self.graph = None
            _settle_after_failed_capture()
            return exc

    def _capture(self, warmup_runs: int) -> torch.cuda.CUDAGraph:
        """Warm up on a side stream, then record one full decode into a CUDA graph on that stream.

        Warm-up runs every kernel once outside capture (lazy cuBLAS handle and workspace creation,
        allocator growth); capturing on the same stream reuses that stream's cuBLAS workspace.
        """
        with torch.no_grad(), torch.cuda.device(self.device):
            current = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(current)
            with torch.cuda.stream(side):
                for _ in range(warmup_runs):
                    self._decode()
            current.wait_stream(side)
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                self._decode()
            torch.cuda.synchronize()
        return graph

    # ---- the decode (everything in here is captured: no host syncs, no allocation of inputs) ----------
    def _lstm_step(self, w: _StackWeights, x0_gates: torch.Tensor, hs: list, cs: list) -> None:
        """Advance every layer one step; `x0_gates` is layer 0's input projection with both its biases."""
        for k in range(len(hs)):
            if self.fused_cell:
                if k == 0:
                    hs[k], cs[k] = _fused_lstm_cell(x0_gates, hs[k] @ w.w_hh_t[k], cs[k])
                else:
                    hs[k], cs[k] = _fused_lstm_cell(
                        hs[k - 1] @ w.w_ih_t[k], hs[k] @ w.w_hh_t[k], cs[k], w.b_ih[k], w.b_hh[k]
                    )
            else:  # the same operations, in the same order, as MusicVAE.generate
                gates = x0_gates if k == 0 else torch.addmm(w.bias[k], hs[k - 1], w.w_ih_t[k])
                gates = gates + hs[k] @ w.w_hh_t[k]
                gi, gf, gg, go = gates.chunk(4, 1)
                cs[k] = torch.sigmoid(gf) * cs[k] + torch.sigmoid(gi) * torch.tanh(gg)
                hs[k] = torch.sigmoid(go) * torch.tanh(cs[k])

    @staticmethod
    def _initial_state(cond, weight, bias, layers: int, hidden: int) -> tuple[list, list]:
        """(h0, c0) per layer from a conditioning vector, as model._init_state computes them."""
        s = torch.tanh(F.linear(cond, weight, bias)).view(cond.shape[0], layers, 2, hidden)
        h = s[:, :, 0].transpose(0, 1).contiguous()
        c = s[:, :, 1].transpose(0, 1).contiguous()
        return list(h.unbind(0)), list(c.unbind(0))

    def _bar_conditions(self, z: torch.Tensor) -> list[torch.Tensor]:
        """One conditioning vector [B, D] per bar: z itself for a flat model, else the conductor's."""
        cfg = self.cfg
        if not cfg.hierarchical:
            return [z]
        if self.conductor == "module":
            return list(self.model.bar_embeddings(self.z_buf).to(self.dtype).unbind(1))
        n_bars = cfg.seq_len // cfg.bar_len
        w = self.cond
        hs, cs = self._initial_state(z, self.cond_init_w, self.cond_init_b, 2, w.hidden)
        x0_gates = torch.addmm(w.bias[0], z, self.cond_w_ih0_t)  # the conductor's input is z at every step
        conds = []
        for _ in range(n_bars):
            self._lstm_step(w, x0_gates, hs, cs)
            conds.append(torch.tanh(F.linear(hs[-1], self.cond_out_w, self.cond_out_b)))
        return conds

    def _logits_without_bias(self, h: torch.Tensor) -> torch.Tensor:
        """float32 logits minus the output bias (the bias lives in the noise buffer)."""
        if self.dtype == torch.float32:
            return h @ self.out_w_t
        if self.mm_float_out:
            return _mm_float32(h, self.out_w_t)
        return h.float() @ self.out_w32_t

    def _decode(self) -> None:
        """z_buf (+ noise_buf) -> out_buf, for the full static batch."""
        cfg = self.cfg
        z = self.z_buf.to(self.dtype)
        prev = self.start_tokens
        step = 0
        for cond in self._bar_conditions(z):
            hs, cs = self._initial_state(cond, self.dec_init_w, self.dec_init_b, cfg.dec_layers, cfg.dec_hidden)
            cond_gates = torch.addmm(self.dec.bias[0], cond, self.w_cond_t)  # constant over the bar
            for _ in range(self.steps_per_bar):
                x0_gates = self.token_gates.index_select(0, prev) + cond_gates
                self._lstm_step(self.dec, x0_gates, hs, cs)
                if self.sample:
                    scores = self._logits_without_bias(hs[-1]) + self.noise_buf[step]
                elif self.dtype == torch.float32:
                    scores = F.linear(hs[-1], self.out_w, self.out_b)  # what generate's self.out(h) does
                else:
                    scores = self._logits_without_bias(hs[-1]) + self.out_b32
                torch.argmax(scores, dim=-1, out=self.out_buf[step])
                prev = self.out_buf[step]
                step += 1

    # ---- calling -----------------------------------------------------------------------------------
    def _fill_noise(self, generator: torch.Generator | None) -> None:
        """noise = out_bias + T * Gumbel, i.e. out_bias - T * log(-log(u)); u clamped as generate does."""
        u = self.noise_buf
        u.uniform_(generator=generator)
        u.clamp_(min=1e-10).log_().neg_().log_().mul_(-self.temperature).add_(self.out_b32)

    def _check_inputs(self, z, generator) -> torch.Tensor:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() == 1:
            z = z[None]
        if z.dim() != 2 or z.shape[1] != self.cfg.z_dim:
            raise ValueError(f"z must have shape [batch, {self.cfg.z_dim}], got {list(z.shape)}")
        if not z.is_floating_point():
            raise ValueError(f"z must be a floating-point tensor, got {z.dtype}")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
            if generator.device.type != self.device.type:
                raise ValueError(f"generator is on {generator.device}, the decoder on {self.device}")
        return z

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Tokens [len(z), seq_len] (int64, on the decoder's device) for latent vectors z [n, z_dim]."""
        z = self._check_inputs(z, generator)
        chunks = []
        for start in range(0, z.shape[0], self.batch_size):
            part = z[start : start + self.batch_size]
            rows = part.shape[0]
            self.z_buf[:rows].copy_(part)
            if rows < self.batch_size:
                self.z_buf[rows:].zero_()  # padding rows: decoded, then dropped
            if self.sample:
                self._fill_noise(generator)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._decode()
            # Always a fresh tensor: the static buffer is overwritten by the next call.
            chunks.append(self.out_buf[:, :rows].t().clone(memory_format=torch.contiguous_format))
        if not chunks:
            return torch.empty(0, self.seq_len, dtype=torch.long, device=self.device)
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def describe(self) -> dict:
        """JSON-able summary of what this decoder does and which implementation paths it took."""
        return {
            "batch_size": self.batch_size,
            "dtype": str(self.dtype).replace("torch.", ""),
            "temperature": self.temperature,
            "sampling": self.sample,
            "graph_captured": self.graph is not None,
            "capture_seconds": self.capture_seconds,
            "fallback_reason": self.fallback_reason,
            "conductor": self.conductor if self.cfg.hierarchical else None,
            "fused_lstm_cell": self.fused_cell,
            "mm_float32_logits": self.mm_float_out,
            "probe_notes": self.probe_notes,
            "device": str(self.device),
        }
