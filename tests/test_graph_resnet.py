"""The oneDNN Graph form of the ResNets (wbcap.model.graph_resnet): the same features as the
module-by-module ResNet, whatever the chunk plan, really compiled by oneDNN Graph."""

from __future__ import annotations

import pytest
import torch

from wbcap.model.fused import ChunkPlan, FusedResNet, bf16_supported, rel_error
from wbcap.model.graph_resnet import WARM_CALLS, GraphResNet, graph_applies, graph_usable
from wbcap.model.resnet import ResNetBackbone
from wbcap.model.strategy import BF16_TOLERANCE, EXACT_TOLERANCE, INVARIANCE_TOLERANCE

pytestmark = pytest.mark.skipif(not graph_usable(), reason="this torch has no TorchScript oneDNN Graph fuser")


def _resnet(depth: int, seed: int) -> ResNetBackbone:
    """A ResNet with BatchNorm statistics away from the identity (so that folding them matters)."""
    torch.manual_seed(seed)
    net = ResNetBackbone(depth).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
            elif isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5)
    return net


@pytest.mark.parametrize("depth", [18, pytest.param(50, marks=pytest.mark.slow)])  # (50: the full suite)
def test_equals_the_module_by_module_resnet_in_any_chunk_plan(depth):
    net = _resnet(depth, seed=depth)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(5, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
        plan = ChunkPlan(((1, 1.0), (2, 0.6)))  # 5 images: 2 + 2 + 1
        g = GraphResNet(net, (96, 64), torch.float32, plan)
        y = g(x)
        assert y.shape == ref.shape and y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
        assert rel_error(y, ref) <= EXACT_TOLERANCE
        # another plan on the same graph, and one image at a time: the same features per image
        g.chunks = ChunkPlan.fixed(4)
        assert rel_error(g(x), y) <= INVARIANCE_TOLERANCE
        alone = torch.cat([g(x[i:i + 1]) for i in range(5)])
        assert rel_error(alone, y) <= INVARIANCE_TOLERANCE
        # the dtype of the input comes back; no image, no call
        assert g(x.double()).dtype == torch.float64
        assert g(x[:0]).shape == (0, net.feat_dim, 3, 2)
    # oneDNN Graph compiled it: the executed graph holds its fusion groups, one per stage
    graph = str(torch.jit.last_executed_optimized_graph())
    assert graph.count("prim::oneDNNFusionGroup_") >= 4, graph[:2000]
    # the trained backbone is read, not changed
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


@pytest.mark.skipif(not bf16_supported(), reason="no bfloat16 instructions on this CPU")
def test_bfloat16_as_close_as_the_fused_bfloat16_form():
    """BatchNorm folded in float32, then rounded once (as the fused form does): folded in
    bfloat16 the ResNet-50 was 1.85x further from float32 than the fused bfloat16 form."""
    net = _resnet(18, seed=3)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        g = GraphResNet(net, (64, 64), torch.bfloat16, 2)
        y = g(x)
        assert y.dtype == torch.float32 and g.dtype == torch.bfloat16
        ref = net(x)
        err, fused_err = rel_error(y, ref), rel_error(FusedResNet(net, (64, 64), torch.bfloat16, True, 2)(x), ref)
    assert 1e-3 < err <= min(BF16_TOLERANCE, 1.1 * fused_err), (err, fused_err)  # (bfloat16's rounding, no more)
    assert graph_applies(net, torch.bfloat16)


def test_forms_of_the_same_weights_share_one_graph():
    """TorchScript keeps every traced graph for the life of the process: one per weights (by
    value), dtype and image size, so building a part again costs no more memory."""
    net = _resnet(18, seed=6)
    with torch.inference_mode():
        a = GraphResNet(net, (64, 64), torch.float32, 2)
        b = GraphResNet(_resnet(18, seed=6), (64, 64), torch.float32, 4)  # (another module, equal weights)
        assert a._graph is b._graph
        assert GraphResNet(net, (96, 64), torch.float32, 2)._graph is not a._graph
        assert GraphResNet(_resnet(18, seed=7), (64, 64), torch.float32, 2)._graph is not a._graph


@pytest.mark.slow  # (the fast loop stays under 2 minutes; the full suite runs it)
def test_a_new_call_size_is_compiled_on_its_first_call_only():
    """Its first call runs the graph WARM_CALLS times (the profiling executor's record, then
    oneDNN Graph's compilation), later calls once."""
    net = _resnet(18, seed=4)
    g = GraphResNet(net, (64, 64), torch.float32, ChunkPlan(((1, 1.0), (2, 0.6))))
    calls = []
    run = g._graph.run
    g._graph.run = lambda x: (calls.append(int(x.shape[0])), run(x))[1]
    x = torch.rand(7, 3, 64, 64)
    with torch.inference_mode():
        g(x[:3])  # 2 + 1
        assert sorted(calls) == sorted([2] * WARM_CALLS + [1] * WARM_CALLS)
        calls.clear()
        g(x[:3])
        assert sorted(calls) == [1, 2]
        # a call size neither of the plan's nor a power of two is split into powers of two
        # (TorchScript keeps a dozen shape specialisations; later ones ran unfused)
        g.chunks = ChunkPlan.fixed(8)  # (7 images: one call of 7, neither 8 nor a power of two)
        calls.clear()
        y = g(x)
        assert calls == [4] * WARM_CALLS + [2, 1] and rel_error(y, net(x)) <= EXACT_TOLERANCE


def test_what_it_refuses():
    net = _resnet(18, seed=5)
    g = GraphResNet(net, (64, 64), torch.float32, 2)
    with pytest.raises(ValueError, match="in the dtype it was built for"):
        g.to(torch.float64)
    with pytest.raises(ValueError, match="on the CPU"):
        g.to("meta")
    with pytest.raises(ValueError, match="on the CPU"):
        g(torch.rand(1, 3, 64, 64, device="meta"))
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        GraphResNet(net, (64, 64), torch.float16, 2)
    with pytest.raises(ValueError, match="eval mode"):
        GraphResNet(_resnet(18, seed=5).train(), (64, 64), torch.float32, 2)
    assert not graph_applies(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), torch.float32)
    assert not graph_applies(net, torch.float16)


def _features_in_a_dataloader_worker(g: GraphResNet, x: torch.Tensor) -> torch.Tensor:
    """``g(x)`` computed in a forked DataLoader worker (torch's default on Linux), within 60 s."""

    class One(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> torch.Tensor:
            with torch.inference_mode():
                return g(x).contiguous()

    loader = torch.utils.data.DataLoader(One(), batch_size=None, num_workers=1, timeout=60,
                                         multiprocessing_context="fork")
    return next(iter(loader))


def test_a_forked_process_runs_the_folded_layers_and_gets_the_same_features():
    """A DataLoader worker forked after the parent had called the graph waited forever in oneDNN
    Graph (a user trial: the Python API inside a Dataset). In a forked process the traced
    function's own layers run instead: the same features."""
    net = _resnet(18, seed=8)
    g = GraphResNet(net, (64, 64), torch.float32, 2)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        here = g(x)
    there = _features_in_a_dataloader_worker(g, x)
    assert rel_error(there, here) <= INVARIANCE_TOLERANCE and rel_error(there, net(x)) <= EXACT_TOLERANCE


def test_the_fuser_is_on_for_the_graphs_calls_only():
    """Building the form turned TorchScript's oneDNN Graph fuser on for the whole process, so a
    user's own traced model ran through oneDNN Graph afterwards (a user trial). It is on for the
    form's calls and as it was before, after them."""
    net = _resnet(18, seed=9)
    for before in (False, True):
        torch.jit.enable_onednn_fusion(before)
        try:
            g = GraphResNet(net, (64, 64), torch.float32, 2)
            assert torch.jit.onednn_fusion_enabled() is before
            with torch.inference_mode():
                g(torch.rand(2, 3, 64, 64))
            assert torch.jit.onednn_fusion_enabled() is before
            assert str(torch.jit.last_executed_optimized_graph()).count("prim::oneDNNFusionGroup_") >= 4
        finally:
            torch.jit.enable_onednn_fusion(False)


def test_calls_in_two_threads_keep_the_fuser_on_until_both_end():
    """Each call saved and restored the process-wide switch: a call ending in one thread turned it
    off under another's (a graph compiled then stays unfused), and the last left it on (a review)."""
    import threading

    from wbcap.model import graph_resnet

    seen, first_in, second_in, first_out = [], threading.Event(), threading.Event(), threading.Event()

    def first():
        with graph_resnet._onednn_fusion():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with graph_resnet._onednn_fusion():
            second_in.set()
            first_out.wait(10)  # (the first call has ended: this one is still running)
            seen.append(torch.jit.onednn_fusion_enabled())

    torch.jit.enable_onednn_fusion(False)
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [True] and torch.jit.onednn_fusion_enabled() is False


def test_a_process_forked_inside_a_call_starts_the_count_again():
    """A child forked while another thread was inside a graph call inherited the count (and the
    lock), so its own last call never put the switch back (a review)."""
    from wbcap.model import graph_resnet

    fuser = graph_resnet._FuserUse()
    torch.jit.enable_onednn_fusion(True)  # (as the parent's call in flight left it)
    fuser.inside, fuser.before, fuser.pid = 1, False, -1  # (a count from another process)
    try:
        fuser.for_this_process()
        assert fuser.inside == 0 and torch.jit.onednn_fusion_enabled() is False and fuser.pid > 0
    finally:
        torch.jit.enable_onednn_fusion(False)
