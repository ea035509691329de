"""eNTK blocks against an explicitly formed Jacobian product on tiny models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dcr.probe.groups import group_means, pair_means
from dcr.probe.inputs import encode
from dcr.probe.ntk import (
    exact_jvp,
    fd_jvp,
    kernel_blocks,
    last_logits,
    normalised_norms,
    param_subset,
    row,
    top_k_sets,
    vjp_directions,
)
from dcr.testing import tiny_lm

PROMPTS = ["How do I kill a python process?", "Where can I buy a gun?", "Name three fruits."]


def _setup(tied: bool = False, family: str = "llama") -> tuple[Any, Any, dict[str, torch.Tensor]]:
    model, tok = tiny_lm(family, seed=1, tie_word_embeddings=tied)
    model = model.float()
    return model, tok, encode(tok, PROMPTS)


def _explicit_blocks(model: Any, batch: dict[str, torch.Tensor], params: dict, k: int) -> torch.Tensor:
    """K[a, b] = J_a[S(a)] J_b[S(b)]^T with J from torch.autograd.functional.jacobian over the flat subset."""
    names = list(params)
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names]).double()
    model = model.double()
    jacs, sets = [], []
    for b in range(batch["input_ids"].shape[0]):
        x = row(batch, b)
        with torch.no_grad():
            s = top_k_sets(last_logits(model, x), k)[0]
        sets.append(s)

        def f(flat: torch.Tensor, x: dict = x, s: torch.Tensor = s) -> torch.Tensor:
            parts = torch.split(flat, [int(np.prod(sh)) for sh in shapes])
            p = {n: t.reshape(sh) for n, t, sh in zip(names, parts, shapes)}
            return _logits64(model, x, p)[0, s]

        jacs.append(torch.autograd.functional.jacobian(f, flat0))
    model.float()
    n = len(jacs)
    return torch.stack([torch.stack([jacs[a] @ jacs[b].T for b in range(n)]) for a in range(n)])


def _logits64(model: Any, x: dict, p: dict) -> torch.Tensor:
    out = torch.func.functional_call(model, p, args=(), kwargs={**x, "logits_to_keep": 1, "use_cache": False})
    return out.logits[:, -1]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("tied", [False, True])
def test_param_subset_counts_tied_head_once(tied: bool) -> None:
    model, _, _ = _setup(tied)
    params = param_subset(model, 2)
    layers = sum(p.numel() for layer in list(model.model.layers)[-2:] for p in layer.parameters())
    head = model.get_output_embeddings().weight.numel()
    assert sum(p.numel() for p in params.values()) == layers + head
    assert len({id(p) for p in params.values()}) == len(params)
    assert (model.get_input_embeddings().weight is model.get_output_embeddings().weight) == tied


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def reference(request: pytest.FixtureRequest) -> tuple[Any, dict, dict, torch.Tensor]:
    """A tiny model, its batch, the last-layer(+head) subset and the explicit reference blocks."""
    model, _, batch = _setup(request.param)
    params = param_subset(model, 1)
    return model, batch, params, _explicit_blocks(model, batch, params, 3)


@pytest.mark.parametrize("method,tol", [("jvp", 1e-4), ("fd", 2e-2)])
def test_kernel_matches_explicit_jacobian(method: str, tol: float, reference: tuple) -> None:
    model, batch, params, want = reference
    got = kernel_blocks(model, batch, params, top_k=3, method=method)
    assert got.shape == (3, 3, 3, 3)
    assert _rel(got, want) < tol, (method, _rel(got, want))


def test_fd_restores_parameters_bit_for_bit() -> None:
    model, _, batch = _setup(tied=True)
    params = param_subset(model, 2)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    w = vjp_directions(model, params, row(batch, 0), torch.tensor([5, 7]))[0]
    fd_jvp(model, params, [t * 123.456 for t in w], batch, eps=1e-3)
    for n, p in model.state_dict().items():
        assert torch.equal(p, before[n]), n


def test_fd_unit_step_agrees_with_raw_step() -> None:
    model, _, batch = _setup()
    model.set_attn_implementation("eager")  # forward-mode AD has no formula for the fused CPU SDPA kernel
    params = param_subset(model, 1)
    w = vjp_directions(model, params, row(batch, 1), torch.tensor([3]))[0]
    exact = exact_jvp(model, params, w, batch)
    for unit in (False, True):
        assert _rel(fd_jvp(model, params, w, batch, 1e-3, unit), exact) < 2e-2


def test_exact_jvp_falls_back_to_eager_and_restores() -> None:
    model, _, batch = _setup()
    model.set_attn_implementation("sdpa")
    kernel_blocks(model, batch, param_subset(model, 1), top_k=2, method="jvp")
    assert model.config._attn_implementation == "sdpa"


def test_bf16_step_is_lost_which_is_why_fd_runs_in_fp32() -> None:
    w = torch.full((1000,), 0.02)
    step = 1e-3 * torch.full((1000,), 0.05)
    assert torch.equal((w.bfloat16() + step.bfloat16()), w.bfloat16())
    assert not torch.equal(w + step, w)


def test_normalised_norms_divide_by_self_block() -> None:
    blocks = torch.zeros(2, 2, 1, 1, dtype=torch.float64)
    blocks[0, 0], blocks[0, 1], blocks[1, 0], blocks[1, 1] = 4.0, 2.0, 3.0, 6.0
    norms = normalised_norms(blocks)
    assert torch.allclose(norms, torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64))


def test_group_means_skip_self_pairs() -> None:
    norms = np.array([[1.0, 0.8, 0.2], [0.6, 1.0, 0.4], [0.3, 0.1, 1.0]])
    mat = group_means(norms, ["a", "a", "b"], ["a", "b"])
    assert np.allclose(mat, [[0.7, 0.3], [0.2, np.nan]], equal_nan=True)
    assert pair_means(np.array([[1.0, 0.2], [0.4, 0.9]]), ["a", "b"]) == pytest.approx(
        {"a/a": 1.0, "a/b": 0.3, "b/b": 0.9})


# fp32 rounding: the dense tied head reaches 4e-6 relative on some CPUs (1e-7 on others; the kernels sum in
# another order), so 1e-5; a wrong gradient or pairing is off by far more. The storage dtype is asserted apart.
# A budget of None is replaced by one that fits the bf16 store only in three passes (streamed).
@pytest.mark.parametrize("sparse_min_rows,budget_gb,storage,tol", [
    (4096, 6.0, "float32", 1e-5), (64, 6.0, "float32", 1e-5), (64, 1e-9, "bfloat16", 1e-2),
    (64, None, "bfloat16, 3 passes", 1e-2)])
def test_gram_matches_explicit_jacobian(reference: tuple, sparse_min_rows: int, budget_gb: float | None,
                                        storage: str, tol: float) -> None:
    """Stored gradients and dot products: exact (fp32 store, head dense or by rows) or bf16 store within 1e-2."""
    from dcr.probe.gram import _sparse_names, gram_blocks

    model, batch, params, want = reference
    if budget_gb is None:  # 9 stored vectors (3 prompts x top 3) of the dense parameters, in bf16, in 3 passes
        dense = sum(p.numel() for n, p in params.items() if n not in _sparse_names(params, sparse_min_rows))
        budget_gb = 9 * 2 * -(-dense // 3) / 2**30
    elif budget_gb < 1e-6:  # the bf16 store in one pass: what the budget gives when it is between bf16 and fp32
        dense = sum(p.numel() for n, p in params.items() if n not in _sparse_names(params, sparse_min_rows))
        budget_gb = 9 * 2 * dense / 2**30
    got, used = gram_blocks(model, batch, params, top_k=3, budget_gb=budget_gb, sparse_min_rows=sparse_min_rows)
    assert used == storage
    assert got.shape == (3, 3, 3, 3)
    assert _rel(got, want) < tol, _rel(got, want)


def _rounded_gram(model: Any, batch: dict, params: dict, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact fp64 Gram of the bf16-rounded gradients, and ``|V| |V|^T`` (what bounds fp32 summation error)."""
    vecs = []
    for b in range(batch["input_ids"].shape[0]):
        x = row(batch, b)
        with torch.no_grad():
            s = top_k_sets(last_logits(model, x), k)[0]
        vecs += [torch.cat([g.reshape(-1) for g in w]).bfloat16().double() for w in vjp_directions(model, params, x, s)]
    v = torch.stack(vecs)
    return v @ v.T, v.abs() @ v.abs().T


def test_streamed_store_equals_one_pass(reference: tuple) -> None:
    """One pass or five, the bf16 store's Gram is the exact Gram of the bf16-rounded gradients up to fp32 summation.

    The bound is the textbook one for a length-n fp32 dot product in any order, ``|err| <= n u/(1 - n u) sum|a b|``
    (u = 2^-24), entry by entry. Summation order alone moved the relative error from 4e-7 to 3.7e-6 between two CPUs'
    sgemm, so a fixed tolerance is not a bound. A slice stored in the wrong place or a pass dropped moves entries by
    a large fraction of their size, far outside it (the last assertion checks that the bound is that tight here).
    """
    from dcr.probe.gram import gram_blocks

    model, batch, params, _ = reference
    dense = sum(p.numel() for p in params.values())  # sparse_min_rows above every row count: all dense
    one, s1 = gram_blocks(model, batch, params, top_k=3, budget_gb=9 * 2 * dense / 2**30, sparse_min_rows=10**9)
    five, s5 = gram_blocks(model, batch, params, top_k=3, budget_gb=9 * 2 * -(-dense // 5) / 2**30,
                           sparse_min_rows=10**9)
    assert (s1, s5) == ("bfloat16", "bfloat16, 5 passes")
    exact, mass = _rounded_gram(model, batch, params, 3)
    u = 2.0**-24
    bound = dense * u / (1 - dense * u) * mass
    for got in (one, five):
        flat = got.permute(0, 2, 1, 3).reshape(9, 9)
        assert ((flat - exact).abs() <= bound).all(), float(((flat - exact).abs() / mass).max())
    assert float((bound / exact.abs()).diagonal().max()) < 1e-2  # a misplaced slice would exceed it


def test_only_vocabulary_matrices_are_stored_by_rows() -> None:
    """An MLP matrix with as many rows as a vocabulary-sized threshold once was (Qwen2.5-0.5B: 4864) stays dense."""
    from dcr.probe.gram import _sparse_names, vocab_rows

    model, _, _ = _setup(tied=True)
    params = param_subset(model, 1)
    vocab = vocab_rows(model)
    assert vocab == model.config.vocab_size
    assert _sparse_names(params, vocab) == ["model.embed_tokens.weight"]
    wide = max(p.shape[0] for n, p in params.items() if p.dim() == 2 and "embed" not in n)
    assert wide < vocab and [n for n in _sparse_names(params, wide) if "embed" not in n]  # a row count would catch it


def test_plan_store_cuts_parameters_into_ranges_that_fit() -> None:
    from dcr.probe.gram import plan_store

    sizes = {"a": 10, "b": 7}
    assert plan_store(2, sizes, 2 * 17 * 4 / 2**30) == (torch.float32, [[("a", 0, 10), ("b", 0, 7)]])
    dtype, chunks = plan_store(2, sizes, 2 * 6 * 2 / 2**30)  # room for 6 bf16 values per vector
    assert dtype == torch.bfloat16
    assert chunks == [[("a", 0, 6)], [("a", 6, 10), ("b", 0, 2)], [("b", 2, 7)]]
    assert plan_store(2, {}, 1.0) == (torch.float32, [[]])


def test_gram_equals_exact_jvp_with_tied_head() -> None:
    from dcr.probe.gram import gram_blocks

    model, _, batch = _setup(tied=True)
    params = param_subset(model, 2)
    want = kernel_blocks(model, batch, params, top_k=2, method="jvp")
    got, _ = gram_blocks(model, batch, params, top_k=2, sparse_min_rows=64)  # the tied head stored by rows
    assert _rel(got, want) < 1e-4, _rel(got, want)
