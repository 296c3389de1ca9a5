"""A linear layer split by its SVD into a frozen principal part and a trainable residual (Effort).

``W = U Σ Vᵀ`` with singular values in decreasing order. The top ``n - k`` directions (``n = min(out, in)``)
form the principal part ``W_main``, frozen; the ``k`` smallest form the residual ``U_k diag(σ_k) V_kᵀ``,
whose three factors are trained. The layer computes ``x (W_main + U_k diag(σ_k) V_kᵀ)ᵀ + b``.

``W_main`` is stored as ``W - U_k diag(σ_k) V_kᵀ`` (the original weight minus its initial residual), not
rebuilt from the top factors: the two are equal in exact arithmetic, and this way the untrained layer
reproduces the pretrained one to the last rounding error. The principal singular vectors are kept as
non-persistent buffers, only for the orthogonality loss; they, like ``W_main``, are derived from the frozen
backbone at build time, so checkpoints hold only the residual factors. The forward pass runs the residual
as a rank-``k`` branch beside the principal matmul, so training costs no dense weight gradient.

The two regularisers of Effort (Yan et al., ICML'25, official code ``SVDResidualLinear``):

- :meth:`orthogonal_loss`: ``½‖ÛᵀÛ − I‖_F + ½‖V̂V̂ᵀ − I‖_F`` with ``Û = [U_main, U_k]`` and
  ``V̂ = [V_mainᵀ; V_kᵀ]`` the singular vectors, principal and residual, side by side: the residual must stay
  orthonormal and orthogonal to the frozen principal subspace. The official code writes ``ÛÛᵀ``, which has
  the same norm for the square attention weights Effort targets; ``ÛᵀÛ`` (orthonormal columns) is the right
  statement for a rectangular weight too. It is computed blockwise: the frozen ``U_mainᵀU_main`` block is a
  constant (the identity, in exact arithmetic) and is left out, so the cost is ``O(out · n · k)``, not the
  ``O(out² · n)`` of forming the whole Gram matrix.
- :meth:`singular_value_loss`: ``|‖W_main + U_k diag(σ_k) V_kᵀ‖_F² − ‖W‖_F²|``, the squared Frobenius norm
  (the sum of squared singular values) of the adapted weight kept at the pretrained one's.
"""

from __future__ import annotations

import torch
from torch import nn


class SVDResidualLinear(nn.Module):
    """Drop-in replacement of an ``nn.Linear``: frozen principal SVD part plus a trainable rank-``k`` residual.

    Args:
        linear: the pretrained layer (its weight may be on the meta device: shapes only).
        residual_rank: ``k``, how many of the smallest singular directions are trained.
    """

    def __init__(self, linear: nn.Linear, residual_rank: int) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        n = min(out_features, in_features)
        if not 0 < residual_rank < n:
            raise ValueError(f"residual_rank must be between 1 and {n - 1} for a {out_features}x{in_features} "
                             f"weight, got {residual_rank}")
        self.in_features, self.out_features, self.residual_rank = in_features, out_features, residual_rank
        weight = linear.weight.detach()
        # At least float32 (a bf16/fp16 SVD would be too coarse); on the meta device this only shapes.
        dtype = torch.promote_types(weight.dtype, torch.float32)
        u, s, vh = (t.to(weight.dtype) for t in torch.linalg.svd(weight.to(dtype), full_matrices=False))
        p = n - residual_rank
        u_k, s_k, vh_k = u[:, p:], s[p:], vh[p:]
        residual = (u_k * s_k) @ vh_k
        self.weight_main = nn.Parameter(weight - residual, requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.U_residual = nn.Parameter(u_k.clone())
        self.S_residual = nn.Parameter(s_k.clone())
        self.V_residual = nn.Parameter(vh_k.clone())
        self.register_buffer("U_main", u[:, :p].clone(), persistent=False)
        self.register_buffer("V_main", vh[:p].clone(), persistent=False)
        # ‖W‖_F² of the pretrained weight (a float; 0 on the meta device, where nothing is computed).
        self.weight_sq_norm = 0.0 if weight.is_meta else float(weight.double().square().sum())

    def residual(self) -> torch.Tensor:
        """The trained part ``U_k diag(σ_k) V_kᵀ`` (out x in)."""
        return (self.U_residual * self.S_residual) @ self.V_residual

    def merged_weight(self) -> torch.Tensor:
        """The effective weight: frozen principal part plus the trained residual."""
        return self.weight_main + self.residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The residual as its own rank-k branch (x V_k) diag(σ_k) U_kᵀ, never merged into an out x in matrix:
        # the backward pass then costs what LoRA's does, with no dense weight gradient to form.
        principal = nn.functional.linear(x, self.weight_main, self.bias)
        return principal + nn.functional.linear(nn.functional.linear(x, self.V_residual) * self.S_residual,
                                                self.U_residual)

    def orthogonal_loss(self) -> torch.Tensor:
        """``½‖ÛᵀÛ − I‖_F + ½‖V̂V̂ᵀ − I‖_F`` without the frozen principal-principal blocks (see the module)."""
        eye = torch.eye(self.residual_rank, device=self.U_residual.device, dtype=torch.float32)
        return 0.5 * _gram_deviation(self.U_main.float(), self.U_residual.float(), eye) + 0.5 * _gram_deviation(
            self.V_main.float().T, self.V_residual.float().T, eye)

    def singular_value_loss(self) -> torch.Tensor:
        """``|‖W_eff‖_F² − ‖W‖_F²|``: the adapted weight keeps the pretrained weight's energy."""
        return (self.merged_weight().float().square().sum() - self.weight_sq_norm).abs()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"residual_rank={self.residual_rank}, bias={self.bias is not None}")


def _gram_deviation(frozen: torch.Tensor, trained: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """``‖[F T]ᵀ[F T] − I‖_F`` less the constant ``FᵀF − I`` block: ``sqrt(2‖FᵀT‖² + ‖TᵀT − I‖²)``.

    One norm over the concatenated entries, so its gradient is zero (not NaN) where the deviation is zero.
    """
    cross = frozen.T @ trained
    own = trained.T @ trained - eye
    return torch.linalg.vector_norm(torch.cat([cross.flatten() * 2**0.5, own.flatten()]))
