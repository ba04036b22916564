"""The independent reference of exact per-sample weighting, shared by the
head-family tests in this folder (the same proof as tests/test_gfl_grad.py):

    sum_b w_b * L_b,   L_b = the loss with every other sample's head
                             outputs detached,

computed by running the loss once per sample with a forward hook that
detaches the other samples' slices of the head outputs (batch dimension
``dim``, or rows attributed to samples by an index). The mechanism under
test scales gradients instead; both must give the same parameter gradients.
"""
import torch


def detach_others(obj, b, dim=0, index=None):
    """``obj`` with every slice but sample b's detached (recursively)."""
    if torch.is_tensor(obj):
        if not obj.requires_grad:
            return obj
        if index is not None:
            keep = index.to(obj.device) == b
            keep = keep.view((-1, ) + (1, ) * (obj.dim() - 1))
        else:
            keep = torch.zeros(obj.shape[dim], dtype=torch.bool,
                               device=obj.device)
            keep[b] = True
            shape = [1] * obj.dim()
            shape[dim] = -1
            keep = keep.view(shape)
        return torch.where(keep, obj, obj.detach())
    if isinstance(obj, dict):
        return {k: detach_others(v, b, dim, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(detach_others(v, b, dim, index) for v in obj)
    return obj


def total(losses):
    """The training loss as mmengine's ``BaseModel.parse_losses`` forms it:
    the sum over entries whose key contains 'loss' of the entry's mean (of
    each item's mean for lists; PartA2's ``loss_corner`` is a vector)."""
    out = 0
    for k, v in losses.items():
        if 'loss' not in k:
            continue
        out = out + (sum(x.mean() for x in v) if isinstance(v, (list, tuple))
                     else v.mean())
    return out


def grads_of(modules):
    return [(n, None if p.grad is None else p.grad.clone())
            for m in modules for n, p in m.named_parameters()]


def zero(modules):
    for m in modules:
        m.zero_grad(set_to_none=True)


def reference_grads(head, modules, run_loss, w, dim=0):
    """Gradients of sum_b w_b * L_b (other samples detached at ``head``'s
    outputs); ``run_loss()`` runs the forward and returns the loss dict."""
    zero(modules)
    loss = 0
    for b in range(len(w)):
        h = head.register_forward_hook(
            lambda m, a, out, b=b: detach_others(out, b, dim))
        try:
            loss = loss + float(w[b]) * total(run_loss())
        finally:
            h.remove()
    loss.backward()
    return grads_of(modules)


def mechanism_grads(weighting, modules, run_loss, w):
    """Gradients with ``weighting`` (a PerSampleGradWeighting or
    DetectorWeighting) active with weights ``w``."""
    zero(modules)
    weighting.install()
    try:
        weighting.activate(torch.as_tensor(w, dtype=torch.float64))
        losses = run_loss()
        calls = getattr(weighting, 'call_counts', [weighting.calls])
        assert all(c == 1 for c in calls), calls
    finally:
        weighting.deactivate()
        weighting.remove()
    total(losses).backward()
    return grads_of(modules)


def assert_grads_equal(g1, g2, rtol=1e-4, atol_frac=1e-5):
    """Equal up to float32 summation order (tolerance relative to the
    largest entry; a wrong weighting is off by 10-50 %)."""
    scale = max(a.abs().max().item() for _, a in g1 if a is not None)
    assert scale > 0
    assert len(g1) == len(g2)
    nonzero = 0
    for (n1, a), (n2, b) in zip(g1, g2):
        assert n1 == n2
        if a is None or b is None:
            assert a is None and b is None, n1
            continue
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol_frac * scale,
                                   msg=n1)
        nonzero += int(a.abs().sum() > 0)
    assert nonzero > 0


def max_diff(g1, g2):
    return max((a - b).abs().max().item() for (_, a), (_, b) in zip(g1, g2)
               if a is not None and b is not None)


def check_family(head, modules, run_loss, w, make_weighting, dim=0):
    """The proof for one head family: mechanism == reference, the weights
    matter (differs from the unweighted gradient), and all-ones weights
    give the stock gradient bit for bit."""
    import copy
    state = [copy.deepcopy(m.state_dict()) for m in modules]

    def restore():
        for m, s in zip(modules, state):
            m.load_state_dict(s)

    g_mech = mechanism_grads(make_weighting(), modules, run_loss, w)
    restore()
    g_ref = reference_grads(head, modules, run_loss, w, dim)
    assert_grads_equal(g_mech, g_ref)
    restore()
    zero(modules)
    total(run_loss()).backward()
    g_plain = grads_of(modules)
    assert max_diff(g_mech, g_plain) > 1e-4 * max(
        a.abs().max().item() for _, a in g_plain if a is not None)
    restore()
    g_ones = mechanism_grads(make_weighting(), modules, run_loss,
                             [1.0] * len(w))
    for (n, a), (_, b) in zip(g_ones, g_plain):
        assert (a is None and b is None) or torch.equal(a, b), n
    restore()
    return g_mech
