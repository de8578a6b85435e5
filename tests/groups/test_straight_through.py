"""The gather + zero-valued straight-through term equals the reference's dense formulation.

Reference (PAPER-NOTES §2.1): ``P = P_soft + sg(P_hard - P_soft)``, inputs ``Pᵀ x`` and ``Pᵀ A P``.
Ours gathers and adds a term of value 0; values and all gradients must agree.
"""

import torch

from probsym import fields
from probsym.groups import Permutation
from probsym.groups.permutation import order_by_keys
from probsym.samplers.relax import soft_permutation


def test_gather_with_straight_through_matches_dense_reference():
    torch.manual_seed(0)
    b, n, c = 3, 6, 2
    scores = torch.randn(b, n, requires_grad=True)
    index = order_by_keys(scores.detach(), None)
    soft = soft_permutation(scores, index, None, tau=0.5)
    x = torch.randn(b, n, c, requires_grad=True)
    adj = torch.randn(b, n, n, c, requires_grad=True)
    w_node, w_pair = torch.randn(b, n, c), torch.randn(b, n, n, c)
    g_inverse = Permutation(index, soft).inverse()
    ours = (g_inverse.act(x, fields.node) * w_node).sum()
    ours = ours + (g_inverse.act(adj, fields.pair) * w_pair).sum()
    grads = torch.autograd.grad(ours, [scores, x, adj], retain_graph=True)

    hard = Permutation(index).matrix()
    p = soft + (hard - soft).detach()
    x_ref = torch.einsum("bij,bic->bjc", p, x)
    adj_ref = torch.einsum("bij,bikc,bkl->bjlc", p, adj, p)
    reference = (x_ref * w_node).sum() + (adj_ref * w_pair).sum()
    grads_ref = torch.autograd.grad(reference, [scores, x, adj])

    assert torch.allclose(ours, reference, atol=1e-5)
    for got, want in zip(grads, grads_ref, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert grads[0].abs().max() > 0.1  # the scores do receive a gradient
