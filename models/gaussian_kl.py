"""KL divergence from a diagonal Gaussian to a full-covariance Gaussian, in closed form (nats).

torch has KL(MVN || MVN) and KL(Normal || Normal) but no KL between a diagonal and a full Gaussian.
For q = N(m_q, diag(s^2)) and p = N(m_p, Sigma) on R^L, with Sigma = T T^T (T lower triangular):

    KL(q || p) = 1/2 [ tr(Sigma^{-1} diag(s^2)) + (m_p - m_q)^T Sigma^{-1} (m_p - m_q) - L
                       + log det Sigma - log det diag(s^2) ]

tr(Sigma^{-1} S) = ||T^{-1} diag(s)||_F^2 and the quadratic form = ||T^{-1} (m_p - m_q)||^2, both by
triangular solves; log det Sigma = 2 sum log diag(T).
"""
from __future__ import annotations

import torch


def kl_diagonal_to_full(q_loc: torch.Tensor, q_scale: torch.Tensor, p_loc: torch.Tensor,
                        p_scale_tril: torch.Tensor) -> torch.Tensor:
    """KL(N(q_loc, diag q_scale^2) || N(p_loc, p_scale_tril p_scale_tril^T)).

    Shapes: q_loc, q_scale, p_loc (..., L); p_scale_tril (..., L, L), broadcast over the leading
    dimensions. Returns (...) in nats.
    """
    q_loc, q_scale, p_loc = torch.broadcast_tensors(q_loc, q_scale, p_loc)
    dim = q_loc.shape[-1]
    tril = p_scale_tril.expand(q_loc.shape[:-1] + (dim, dim))
    scaled = torch.linalg.solve_triangular(tril, torch.diag_embed(q_scale), upper=False)  # T^{-1} diag(s)
    trace = scaled.pow(2).sum((-2, -1))
    delta = torch.linalg.solve_triangular(tril, (p_loc - q_loc).unsqueeze(-1), upper=False).squeeze(-1)
    mahalanobis = delta.pow(2).sum(-1)
    log_det_p = 2 * torch.diagonal(tril, dim1=-2, dim2=-1).log().sum(-1)
    log_det_q = 2 * q_scale.log().sum(-1)
    return 0.5 * (trace + mahalanobis - dim + log_det_p - log_det_q)
