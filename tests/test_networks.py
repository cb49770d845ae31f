import torch

from dqnrun.networks import NetworkSpec, QNetwork, dueling_q


def test_mlp_shape_and_layers():
    net = QNetwork(NetworkSpec(4, 3, (512, 128), False))
    assert net(torch.zeros(5, 4)).shape == (5, 3)
    sizes = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert sizes == [(4, 512), (512, 128), (128, 3)]


def test_dueling_aggregation_is_v_plus_centred_advantages():
    v = torch.tensor([[2.0], [-1.0]])
    adv = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(dueling_q(v, adv), torch.tensor([[1.0, 2.0, 3.0], [-2.0, -2.0, 1.0]]))


def test_dueling_output_ignores_a_constant_added_to_the_advantages():
    net = QNetwork(NetworkSpec(4, 3, (16,), True))
    x = torch.randn(7, 4)
    q = net(x)
    with torch.no_grad():
        net.advantage_head.bias += 5.0
    torch.testing.assert_close(net(x), q)


def test_dueling_advantage_part_averages_to_zero_and_mean_q_is_v():
    net = QNetwork(NetworkSpec(4, 3, (16,), True))
    x = torch.randn(7, 4)
    with torch.no_grad():
        v = net.value_head(net.trunk(x))
        q = net(x)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), v)
    torch.testing.assert_close((q - v).mean(dim=1), torch.zeros(7), atol=1e-6, rtol=0)


def test_spec_round_trip():
    spec = NetworkSpec(8, 4, (64, 64), True)
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
