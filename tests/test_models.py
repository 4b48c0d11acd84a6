"""SequenceModel: output shapes for every config, padding invariance, state in/out, config validation."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnedge.errors import BadInputError
from rnnedge.families.sequence.model import ModelConfig, SequenceModel, count_parameters

CELLS = ("rnn", "gru", "lstm")
HEADS = ("classify", "tag", "lm", "regress")
B, T, F, V, H, OUT = 3, 7, 5, 11, 6, 4


def _valid(kind, head, bidirectional):
    return not (head == "lm" and (kind != "tokens" or bidirectional))


def _inputs(kind, batch=B, steps=T, generator=None):
    if kind == "tokens":
        return torch.randint(0, V, (batch, steps), generator=generator)
    return torch.randn(batch, steps, F, generator=generator)


def _config(kind, cell="gru", head="classify", bidirectional=False, layers=1, **kw):
    size = V if kind == "tokens" else F
    return ModelConfig(input_kind=kind, input_size=size, cell=cell, hidden=H, layers=layers,
                       bidirectional=bidirectional, head=head, num_outputs=V if head == "lm" else OUT, **kw)


COMBOS = [c for c in itertools.product(("features", "tokens"), CELLS, HEADS, (False, True), (1, 2)) if _valid(c[0], c[2], c[3])]


@pytest.mark.parametrize("kind,cell,head,bidirectional,layers", COMBOS)
def test_output_and_state_shapes(kind, cell, head, bidirectional, layers):
    torch.manual_seed(0)
    model = SequenceModel(_config(kind, cell, head, bidirectional, layers)).eval()
    x = _inputs(kind)
    out = model(x)
    per_step = head in ("tag", "lm")
    n_out = V if head == "lm" else OUT
    assert out.shape == ((B, T, n_out) if per_step else (B, n_out))
    out2, state = model(x, torch.tensor([T, 2, 5]), model.initial_state(B))
    assert out2.shape == out.shape
    dirs = 2 if bidirectional else 1
    hs = state if cell == "lstm" else (state,)
    assert len(hs) == (2 if cell == "lstm" else 1)
    for s in hs:
        assert s.shape == (layers * dirs, B, H)


@pytest.mark.parametrize("cell,bidirectional,head", list(itertools.product(CELLS, (False, True), ("classify", "tag"))))
def test_padded_row_equals_row_alone(cell, bidirectional, head):
    """With lengths, padding (whatever its values) changes nothing for the real steps."""
    torch.manual_seed(1)
    model = SequenceModel(_config("features", cell, head, bidirectional, layers=2)).eval()
    lengths = torch.tensor([T, 3, 1, 5])
    x = torch.randn(len(lengths), T, F) * 3  # junk in the padded tail on purpose
    with torch.no_grad():
        batched = model(x, lengths)
        pad_out = model.head(torch.zeros(model.head.in_features))
        for i, n in enumerate(lengths.tolist()):
            alone = model(x[i : i + 1, :n])
            if head == "classify":
                torch.testing.assert_close(batched[i], alone[0], atol=1e-6, rtol=1e-5)
            else:
                torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-6, rtol=1e-5)
                if n < T:  # padded steps: the head of a zero vector
                    torch.testing.assert_close(batched[i, n:], pad_out.expand(T - n, -1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_state_carries_over_chunks(cell):
    """Feeding a sequence in two chunks with the state carried equals feeding it whole."""
    torch.manual_seed(2)
    model = SequenceModel(_config("tokens", cell, "lm", layers=2)).eval()
    x = _inputs("tokens")
    with torch.no_grad():
        whole, state_whole = model(x, state=model.initial_state(B))
        a, state = model(x[:, :3], state=model.initial_state(B))
        b, state = model(x[:, 3:], state=state)
    torch.testing.assert_close(torch.cat([a, b], dim=1), whole)
    for s1, s2 in zip(state if cell == "lstm" else (state,), state_whole if cell == "lstm" else (state_whole,)):
        torch.testing.assert_close(s1, s2)


def test_classify_reads_last_real_step_of_bidirectional():
    """Bidirectional classify = forward state at the last real step ++ backward state at step 0."""
    torch.manual_seed(3)
    model = SequenceModel(_config("features", "gru", "classify", bidirectional=True)).eval()
    x = torch.randn(1, T, F)
    with torch.no_grad():
        y, _ = model.rnn(x)  # (1, T, 2H)
        want = model.head(torch.cat([y[0, -1, :H], y[0, 0, H:]]))
        torch.testing.assert_close(model(x)[0], want)


def test_exporter_wrapper_gets_lengths_instead_of_packing():
    model = SequenceModel(_config("features", "lstm", "tag"))
    seen = {}

    class Wrapper(torch.nn.Module):
        accepts_lengths = True

        def __init__(self, rnn):
            super().__init__()
            self.inner = rnn

        def forward(self, x, state=None, lengths=None):
            seen["lengths"], seen["packed"] = lengths, not isinstance(x, torch.Tensor)
            return self.inner(x, state)

    model.rnn = Wrapper(model.rnn)
    lengths = torch.tensor([T, 2, 4])
    assert model(torch.randn(B, T, F), lengths).shape == (B, T, OUT)
    assert seen["lengths"] is lengths and not seen["packed"]


def test_dropout_placement():
    cfg = _config("tokens", "lstm", "lm", layers=2, dropout=0.25, embed_dim=9)
    model = SequenceModel(cfg)
    assert model.drop.p == 0.25 and model.rnn.dropout == 0.25
    assert model.embed.embedding_dim == 9 and model.rnn.input_size == 9
    single = SequenceModel(_config("features", "gru", layers=1, dropout=0.25))
    assert single.rnn.dropout == 0.0  # nothing "between" a single layer
    assert count_parameters(single) == sum(p.numel() for p in single.parameters())


def test_bad_lengths_refused():
    model = SequenceModel(_config("features"))
    with pytest.raises(BadInputError):
        model(torch.randn(2, T, F), torch.tensor([0, 3]))
    with pytest.raises(BadInputError):
        model(torch.randn(2, T, F), torch.tensor([T + 1, 3]))


def test_config_round_trip_and_validation():
    cfg = _config("tokens", "rnn", "tag", True, 2, nonlinearity="relu", dropout=0.1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    bad = [
        {"surprise": 1},
        {"cell": "transformer"},
        {"hidden": 0},
        {"hidden": 2.5},
        {"layers": True},
        {"dropout": 1.0},
        {"bidirectional": "yes"},
        {"head": "lm", "input_kind": "features"},
        {"nonlinearity": "relu", "cell": "gru"},
    ]
    for change in bad:
        with pytest.raises(BadInputError):
            ModelConfig.from_dict({**cfg.to_dict(), **change})
    d = cfg.to_dict()
    del d["hidden"]
    with pytest.raises(BadInputError, match="missing"):
        ModelConfig.from_dict(d)
    with pytest.raises(BadInputError):
        ModelConfig.from_dict([1, 2])
