"""Recurrent modules written the way published packages write them, second round (issue 21 red team,
tests/test_published_style2.py). Small-weight rewrites from memory, each forward kept in its code's own idiom:
Listen-Attend-Spell's pyramidal BLSTM (as published, with its `if T % 2` branch, and three branch-free rewrites),
SpeechBrain's CRDNN (LSTM and a LiGRU stepped in a Python loop), an N-HiTS-like multi-rate pooling, DeepSpeech2,
ESPnet's RNN encoder with subsampling, an RNN-T predictor and
joiner, GRU4Rec, a TFT-style encoder/decoder with a static context as the initial state, a Bahdanau seq2seq with a
length mask, a FullSubNet-style sub-band model and a TCN feeding an LSTM. `CASES` says how each is fed; the
dataclass and helpers are tests/published_modules.py's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:
    from tests.published_modules import Case, _g, _lengths, _seeded
except ImportError:  # run from inside tests/
    from published_modules import Case, _g, _lengths, _seeded


# --- ASR: Listen-Attend-Spell listener (pyramidal BLSTM, stacked 3 times) -------------------------------------------
class PBLSTMLayer(nn.Module):
    def __init__(self, input_dim, hidden):
        super().__init__()
        self.blstm = nn.LSTM(input_dim * 2, hidden, 1, bidirectional=True, batch_first=True)

    def forward(self, x):
        B, T, F_ = x.size()
        if T % 2:  # drop the odd last frame, then stack pairs of frames
            x = x[:, :-1, :]
        x = x.reshape(B, T // 2, 2 * F_)
        return self.blstm(x)[0]


class Listener(nn.Module):
    """Filter banks (B, T, 10) -> encoded (B, T // 8, 16)."""

    def __init__(self, feat=10, hidden=8, layers=3):
        super().__init__()
        self.rnn0 = nn.LSTM(feat, hidden, 1, bidirectional=True, batch_first=True)
        self.pblstm = nn.ModuleList([PBLSTMLayer(2 * hidden, hidden) for _ in range(layers)])

    def forward(self, x):
        x = self.rnn0(x)[0]
        for layer in self.pblstm:
            x = layer(x)
        return x


class PBLSTMLayerTrimmed(PBLSTMLayer):
    """The same layer written without the branch (`x[:, : T // 2 * 2]`): the way out of the refusal above."""

    def forward(self, x):
        B, T, F_ = x.size()
        return self.blstm(x[:, : T // 2 * 2].contiguous().reshape(B, T // 2, 2 * F_))[0]


class PBLSTMLayerFramed(PBLSTMLayer):
    """Pairs of frames taken as frames of 2, hop 2 (`x.unfold(1, 2, 2)`): the odd last frame is dropped by unfold."""

    def forward(self, x):
        B, T, F_ = x.size()
        return self.blstm(x.unfold(1, 2, 2).transpose(2, 3).reshape(B, -1, 2 * F_))[0]


class PBLSTMLayerStrided(PBLSTMLayer):
    """Pairs of frames as even and odd frames side by side (`x[:, 0:T - 1:2]`, `x[:, 1::2]`, both T // 2 long)."""

    def forward(self, x):
        T = x.size(1)
        return self.blstm(torch.cat([x[:, 0:T - 1:2], x[:, 1::2]], dim=-1))[0]


class ListenerTrimmed(Listener):
    def __init__(self, layer=PBLSTMLayerTrimmed):
        super().__init__()
        self.pblstm = nn.ModuleList([layer(16, 8) for _ in range(3)])


# --- ASR: SpeechBrain CRDNN (conv blocks pooling over frequency, LiGRU or LSTM, DNN) --------------------------------
class LiGRUCell(nn.Module):
    """Light GRU (SpeechBrain's LiGRU): no reset gate, ReLU candidate, batch-normed input projections."""

    def __init__(self, input_size, hidden):
        super().__init__()
        self.hidden = hidden
        self.w = nn.Linear(input_size, 2 * hidden, bias=False)
        self.u = nn.Linear(hidden, 2 * hidden, bias=False)
        self.norm = nn.BatchNorm1d(2 * hidden, momentum=0.05)

    def forward(self, x):  # (B, T, F), a Python loop over time as SpeechBrain's _ligru_cell writes it
        w = self.norm(self.w(x).transpose(1, 2)).transpose(1, 2)
        ht = torch.zeros(x.shape[0], self.hidden)
        hiddens = []
        for k in range(w.shape[1]):
            gates = w[:, k] + self.u(ht)
            at, zt = gates.chunk(2, 1)
            zt = torch.sigmoid(zt)
            ht = zt * ht + (1 - zt) * torch.relu(at)
            hiddens.append(ht)
        return torch.stack(hiddens, dim=1)


class CRDNN(nn.Module):
    """Fbanks (B, T, 20) -> frame posteriors (B, T, 7)."""

    def __init__(self, rnn: str = "LSTM"):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 4, (3, 3), padding=(1, 1)), nn.BatchNorm2d(4), nn.LeakyReLU(),
            nn.MaxPool2d((1, 2)),  # pooling over frequency only
            nn.Conv2d(4, 4, (3, 3), padding=(1, 1)), nn.BatchNorm2d(4), nn.LeakyReLU(), nn.MaxPool2d((1, 2)))
        self.rnn = LiGRUCell(20, 10) if rnn == "LiGRU" else nn.LSTM(20, 10, 2, batch_first=True, bidirectional=True)
        self.dnn = nn.Sequential(nn.Linear(10 if rnn == "LiGRU" else 20, 12), nn.BatchNorm1d(12), nn.LeakyReLU(), nn.Linear(12, 7))

    def forward(self, x):
        B, T, _ = x.shape
        z = self.cnn(x.unsqueeze(1))  # (B, C, T, F / 4)
        z = z.permute(0, 2, 1, 3).reshape(B, T, -1)
        z = self.rnn(z)
        z = z[0] if isinstance(z, tuple) else z
        z = z.reshape(B * T, -1)
        return self.dnn(z).reshape(B, T, -1).log_softmax(-1)


# --- forecasting: N-HiTS-like multi-rate pooling of the input, then an LSTM over each rate --------------------------
class NHiTSLSTM(nn.Module):
    """Series (B, T, 2) -> per-rate summaries concatenated (B, 3 * 8) -> forecast (B, 6)."""

    def __init__(self, rates=(1, 2, 4)):
        super().__init__()
        self.pools = nn.ModuleList([nn.MaxPool1d(k, stride=k, ceil_mode=True) for k in rates])
        self.lstms = nn.ModuleList([nn.LSTM(2, 8, batch_first=True) for _ in rates])
        self.head = nn.Linear(8 * len(rates), 6)

    def forward(self, x):
        summaries = []
        for pool, lstm in zip(self.pools, self.lstms):
            z = pool(x.transpose(1, 2)).transpose(1, 2)
            summaries.append(lstm(z)[1][0][-1])  # last hidden state
        return self.head(torch.cat(summaries, dim=-1))


# --- ASR: DeepSpeech2 (conv over (freq, time), BiGRU stack with sequence-wise BatchNorm, lookahead) -----------------
class SequenceWise(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        t, n = x.size(0), x.size(1)
        x = x.view(t * n, -1)
        x = self.module(x)
        return x.view(t, n, -1)


class BatchRNN(nn.Module):
    def __init__(self, input_size, hidden_size, batch_norm=True):
        super().__init__()
        self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
        self.rnn = nn.GRU(input_size, hidden_size, bidirectional=True, bias=True)

    def forward(self, x, output_lengths):
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        x = nn.utils.rnn.pack_padded_sequence(x, output_lengths.cpu(), enforce_sorted=False)
        x, h = self.rnn(x)
        x, _ = nn.utils.rnn.pad_packed_sequence(x)
        return x.view(x.size(0), x.size(1), 2, -1).sum(2).view(x.size(0), x.size(1), -1)  # sum directions


class Lookahead(nn.Module):
    def __init__(self, n_features, context):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(n_features, n_features, kernel_size=context + 1, groups=n_features, bias=False)

    def forward(self, x):  # (T, N, H)
        x = x.transpose(0, 1).transpose(1, 2)
        x = F.pad(x, pad=(0, self.context), value=0)
        x = self.conv(x)
        return x.transpose(1, 2).transpose(0, 1).contiguous()


class DeepSpeech2(nn.Module):
    """Spectrogram (B, 1, 16 freq, T) + lengths (B,) -> log probs (B, T', 6) and output lengths."""

    def __init__(self, hidden=12, n_classes=6):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 4, kernel_size=(5, 7), stride=(2, 2), padding=(2, 3)), nn.BatchNorm2d(4), nn.Hardtanh(0, 20),
            nn.Conv2d(4, 4, kernel_size=(5, 5), stride=(2, 1), padding=(2, 2)), nn.BatchNorm2d(4), nn.Hardtanh(0, 20))
        rnn_input = 4 * 4  # 16 freq -> 8 -> 4, times 4 channels
        self.rnns = nn.ModuleList([BatchRNN(rnn_input, hidden, batch_norm=False), BatchRNN(hidden, hidden)])
        self.lookahead = nn.Sequential(Lookahead(hidden, 3), nn.Hardtanh(0, 20))
        self.fc = nn.Sequential(SequenceWise(nn.Sequential(nn.BatchNorm1d(hidden), nn.Linear(hidden, n_classes, bias=False))))

    def get_seq_lens(self, input_length):
        seq_len = input_length
        for m in self.conv.modules():
            if type(m) is nn.modules.conv.Conv2d:
                seq_len = ((seq_len + 2 * m.padding[1] - m.dilation[1] * (m.kernel_size[1] - 1) - 1) // m.stride[1] + 1)
        return seq_len.int()

    def forward(self, x, lengths):
        output_lengths = self.get_seq_lens(lengths)
        x = self.conv(x)
        sizes = x.size()
        x = x.view(sizes[0], sizes[1] * sizes[2], sizes[3])  # collapse feature dimension
        x = x.transpose(1, 2).transpose(0, 1).contiguous()  # TxNxH
        for rnn in self.rnns:
            x = rnn(x, output_lengths)
        x = self.lookahead(x)
        x = self.fc(x)
        x = x.transpose(0, 1)
        return F.log_softmax(x, dim=-1), output_lengths


# --- ASR: ESPnet RNN encoder with subsampling between layers (x[:, ::2], lengths halved) ----------------------------
class RNNP(nn.Module):
    def __init__(self, idim, elayers, cdim, hdim, subsample):
        super().__init__()
        self.elayers, self.subsample = elayers, subsample
        for i in range(elayers):
            setattr(self, f"birnn{i}", nn.LSTM(idim if i == 0 else hdim, cdim, 1, batch_first=True, bidirectional=True))
            setattr(self, f"bt{i}", nn.Linear(2 * cdim, hdim))

    def forward(self, xs_pad, ilens):
        for layer in range(self.elayers):
            xs_pack = nn.utils.rnn.pack_padded_sequence(xs_pad, ilens.cpu(), batch_first=True, enforce_sorted=False)
            ys, _ = getattr(self, "birnn" + str(layer))(xs_pack)
            ys_pad, ilens = nn.utils.rnn.pad_packed_sequence(ys, batch_first=True)
            sub = self.subsample[layer + 1]
            if sub > 1:
                ys_pad = ys_pad[:, ::sub]
                ilens = torch.tensor([int(i + 1) // sub for i in ilens])
            projection = getattr(self, "bt" + str(layer))(ys_pad.contiguous().view(-1, ys_pad.size(2)))
            xs_pad = torch.tanh(projection.view(ys_pad.size(0), ys_pad.size(1), -1))
        return xs_pad, ilens


class ESPnetEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = RNNP(10, 3, 8, 8, [1, 2, 2, 1])

    def forward(self, xs_pad, ilens):
        return self.enc(xs_pad, ilens)


class ESPnetEncoderTensorLens(nn.Module):
    """The same with the lengths kept a tensor (`(ilens + 1) // sub`), as later ESPnet versions write it."""

    def __init__(self):
        super().__init__()
        self.rnnp = RNNP(10, 3, 8, 8, [1, 2, 2, 1])

    def forward(self, xs_pad, ilens):
        enc = self.rnnp
        for layer in range(enc.elayers):
            xs_pack = nn.utils.rnn.pack_padded_sequence(xs_pad, ilens.cpu(), batch_first=True, enforce_sorted=False)
            ys, _ = getattr(enc, "birnn" + str(layer))(xs_pack)
            ys_pad, _ = nn.utils.rnn.pad_packed_sequence(ys, batch_first=True, total_length=xs_pad.size(1))
            sub = enc.subsample[layer + 1]
            if sub > 1:
                ys_pad = ys_pad[:, ::sub]
                ilens = torch.div(ilens + 1, sub, rounding_mode="floor")
            xs_pad = torch.tanh(getattr(enc, "bt" + str(layer))(ys_pad))
        return xs_pad, ilens


# --- ASR: RNN-T predictor (embedding + LSTM) and joiner over two time axes -----------------------------------------
class RNNTJoint(nn.Module):
    """Encoder output (B, T, 12) and label prefix (B, U) -> joint logits (B, T, U + 1, vocab)."""

    def __init__(self, vocab=9, hidden=12, blank=0):
        super().__init__()
        self.blank = blank
        self.embed = nn.Embedding(vocab, hidden, padding_idx=blank)
        self.pred_rnn = nn.LSTM(hidden, hidden, 1, batch_first=True)
        self.enc_proj = nn.Linear(hidden, hidden)
        self.pred_proj = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, vocab)

    def predict(self, y):
        y = F.pad(y, (1, 0), value=self.blank)  # start of sequence: blank
        g, _ = self.pred_rnn(self.embed(y))
        return g

    def joint(self, f, g):
        f = self.enc_proj(f).unsqueeze(2)  # (B, T, 1, H)
        g = self.pred_proj(g).unsqueeze(1)  # (B, 1, U+1, H)
        return self.out(torch.tanh(f + g))

    def forward(self, enc, labels):
        return self.joint(enc, self.predict(labels))


# --- recommendation: GRU4Rec (item-id embedding + GRU, session-parallel hidden state) ------------------------------
class GRU4Rec(nn.Module):
    def __init__(self, n_items=50, emb=10, hidden=12, layers=2):
        super().__init__()
        self.look_up = nn.Embedding(n_items, emb)
        self.gru = nn.GRU(emb, hidden, layers, dropout=0.0)
        self.h2o = nn.Linear(hidden, n_items)
        self.final_activation = nn.Tanh()

    def forward(self, input, hidden):  # input (T, B) item ids, hidden (layers, B, H)
        embedded = self.look_up(input)
        output, hidden = self.gru(embedded, hidden)
        output = output.view(-1, output.size(-1))
        logit = self.final_activation(self.h2o(output))
        return logit, hidden


# --- forecasting: TFT-style LSTM encoder/decoder, static context as the initial state -------------------------------
class TFTLSTMSeq2Seq(nn.Module):
    """Past (B, T, 5), known future (B, H, 3), static (B, 4) -> quantiles (B, H, 3)."""

    def __init__(self, hidden=12, layers=2):
        super().__init__()
        self.layers = layers
        self.static_h = nn.Linear(4, hidden)
        self.static_c = nn.Linear(4, hidden)
        self.past_proj = nn.Linear(5, hidden)
        self.future_proj = nn.Linear(3, hidden)
        self.lstm_encoder = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.lstm_decoder = nn.LSTM(hidden, hidden, layers, batch_first=True)
        self.gate = nn.Linear(hidden, 2 * hidden)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 3)

    def forward(self, past, future, static):
        input_hidden = self.static_h(static).expand(self.layers, -1, -1).contiguous()
        input_cell = self.static_c(static).expand(self.layers, -1, -1).contiguous()
        embeddings_varying_encoder = self.past_proj(past)
        encoder_output, (hidden, cell) = self.lstm_encoder(embeddings_varying_encoder, (input_hidden, input_cell))
        embeddings_varying_decoder = self.future_proj(future)
        decoder_output, _ = self.lstm_decoder(embeddings_varying_decoder, (hidden, cell))
        lstm_output = torch.cat([encoder_output, decoder_output], dim=1)
        skip = torch.cat([embeddings_varying_encoder, embeddings_varying_decoder], dim=1)
        lstm_output = self.norm(F.glu(self.gate(lstm_output)) + skip)
        max_encoder_length = past.size(1)
        return self.out(lstm_output[:, max_encoder_length:])


# --- NMT: seq2seq with Bahdanau attention over encoder outputs, mask from lengths ----------------------------------
class BahdanauSeq2Seq(nn.Module):
    """Source ids (B, S), source lengths (B,), target ids (B, U) (teacher forcing) -> logits (B, U, vocab)."""

    def __init__(self, vocab=30, emb=8, hidden=10):
        super().__init__()
        self.src_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.tgt_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.key_layer = nn.Linear(2 * hidden, hidden, bias=False)
        self.query_layer = nn.Linear(hidden, hidden, bias=False)
        self.energy_layer = nn.Linear(hidden, 1, bias=False)
        self.rnn = nn.GRU(emb + 2 * hidden, hidden, batch_first=True)
        self.pre_output = nn.Linear(hidden + 2 * hidden + emb, hidden)
        self.generator = nn.Linear(hidden, vocab)

    def forward(self, src, src_lengths, trg):
        packed = nn.utils.rnn.pack_padded_sequence(self.src_emb(src), src_lengths, batch_first=True, enforce_sorted=False)
        output, final = self.encoder(packed)
        encoder_hidden, _ = nn.utils.rnn.pad_packed_sequence(output, batch_first=True, total_length=src.size(1))
        encoder_final = torch.cat([final[0], final[1]], dim=1)
        src_mask = (torch.arange(src.size(1)).unsqueeze(0) < src_lengths.unsqueeze(1)).unsqueeze(1)  # (B, 1, S)
        proj_key = self.key_layer(encoder_hidden)
        hidden = torch.tanh(self.bridge(encoder_final)).unsqueeze(0)
        trg_embed = self.tgt_emb(trg)
        outputs = []
        for i in range(trg.size(1)):  # unrolled decoder, as the tutorial writes it
            prev = trg_embed[:, i].unsqueeze(1)
            query = hidden[-1].unsqueeze(1)
            scores = self.energy_layer(torch.tanh(self.query_layer(query) + proj_key)).squeeze(2).unsqueeze(1)
            scores = scores.masked_fill(src_mask == 0, -float("inf"))
            alphas = F.softmax(scores, dim=-1)
            context = torch.bmm(alphas, encoder_hidden)
            output, hidden = self.rnn(torch.cat([prev, context], dim=2), hidden)
            outputs.append(self.pre_output(torch.cat([prev, output, context], dim=2)))
        return self.generator(torch.tanh(torch.cat(outputs, dim=1)))


# --- denoiser: FullSubNet-style sub-band model (unfold over frequency, frequency folded into batch) ------------------
class FullSubNetLike(nn.Module):
    """Noisy magnitude (B, 1, F=17, T) -> complex ratio mask (B, 2, F, T)."""

    def __init__(self, freqs=17, neighbor=3, hidden=12):
        super().__init__()
        self.neighbor = neighbor
        self.fb_model = nn.LSTM(freqs, hidden, 2, batch_first=True)
        self.fb_out = nn.Linear(hidden, freqs)
        self.sb_model = nn.LSTM(2 * neighbor + 1 + 1, hidden, 2, batch_first=True)
        self.sb_out = nn.Linear(hidden, 2)

    def unfold(self, x):  # (B, 1, F, T) -> (B, F, 2N+1, T)
        B, C, F_, T = x.shape
        x = F.pad(x, [0, 0, self.neighbor, self.neighbor], mode="reflect")
        x = F.unfold(x, (self.neighbor * 2 + 1, T))  # (B, 2N+1 * T, F)
        x = x.reshape(B, self.neighbor * 2 + 1, T, F_).permute(0, 3, 1, 2)
        return x

    def forward(self, noisy_mag):
        B, C, F_, T = noisy_mag.shape
        x = noisy_mag / (noisy_mag.mean(dim=(1, 2, 3), keepdim=True) + 1e-5)
        fb = self.fb_out(self.fb_model(x.squeeze(1).permute(0, 2, 1))[0]).permute(0, 2, 1)  # (B, F, T)
        sb = self.unfold(x)  # (B, F, 2N+1, T)
        sb = torch.cat([sb, fb.unsqueeze(2)], dim=2).reshape(B * F_, self.neighbor * 2 + 2, T)
        sb_mask = self.sb_out(self.sb_model(sb.permute(0, 2, 1))[0])  # (B*F, T, 2)
        return sb_mask.reshape(B, F_, T, 2).permute(0, 3, 1, 2)


# --- forecasting: a TCN (residual dilated causal convs) feeding an LSTM, time-of-day embedding by int input ---------
class TemporalBlock(nn.Module):
    def __init__(self, n_in, n_out, k, dilation):
        super().__init__()
        self.padding = (k - 1) * dilation
        self.conv1 = nn.Conv1d(n_in, n_out, k, dilation=dilation, padding=self.padding)
        self.conv2 = nn.Conv1d(n_out, n_out, k, dilation=dilation, padding=self.padding)
        self.downsample = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else None

    def forward(self, x):
        out = torch.relu(self.conv1(x)[:, :, :-self.padding].contiguous())  # Chomp1d
        out = torch.relu(self.conv2(out)[:, :, :-self.padding].contiguous())
        res = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + res)


class TCNLSTMForecaster(nn.Module):
    """Series (B, T, 3) + time-of-day index (B, T) int64 -> next-step forecast (B, T, 1)."""

    def __init__(self):
        super().__init__()
        self.tod = nn.Embedding(24, 4)
        self.tcn = nn.Sequential(TemporalBlock(7, 8, 3, 1), TemporalBlock(8, 8, 3, 2), TemporalBlock(8, 8, 3, 4))
        self.lstm = nn.LSTM(8, 10, batch_first=True)
        self.head = nn.Linear(10, 1)

    def forward(self, x, hour):
        z = torch.cat([x, self.tod(hour)], dim=-1).transpose(1, 2)
        z = self.tcn(z).transpose(1, 2)
        return self.head(self.lstm(z)[0])


def _espnet(b, t, g):
    lengths = torch.sort(_lengths(b, t, g), descending=True).values
    return torch.randn(b, t, 10, generator=g), lengths


def _ds2(b, t, g):
    return torch.randn(b, 1, 16, t, generator=g), _lengths(b, t, g)


def _rnnt(b, t, g):  # t = encoder frames, labels U = t // 3 + 1
    return torch.randn(b, t, 12, generator=g), torch.randint(1, 9, (b, t // 3 + 1), generator=g)


def _gru4rec(b, t, g):
    return torch.randint(0, 50, (t, b), generator=g), torch.randn(2, b, 12, generator=g)


def _tft(b, t, g):  # t = encoder length, horizon = t // 4 + 1
    return torch.randn(b, t, 5, generator=g), torch.randn(b, t // 4 + 1, 3, generator=g), torch.randn(b, 4, generator=g)


def _nmt(b, t, g):
    lengths = _lengths(b, t, g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    return torch.randint(1, 30, (b, t), generator=g) * mask, lengths, torch.randint(1, 30, (b, 5), generator=g)


def _tcn(b, t, g):
    return torch.randn(b, t, 3, generator=g), torch.randint(0, 24, (b, t), generator=g)


CASES = {c.name: c for c in [
    Case("las_listener", "ASR", lambda: _seeded(Listener), lambda b, t, g: (torch.randn(b, t, 10, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 40), [(3, 8), (1, 9), (2, 15), (1, 16), (2, 17), (3, 301), (1, 304)],
         expect="refused: constrained by torch.export to Eq\\(Mod\\(s\\d+, 2\\), 0\\)"),
    Case("las_listener_trimmed", "ASR", lambda: _seeded(ListenerTrimmed), lambda b, t, g: (torch.randn(b, t, 10, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 40), [(3, 8), (1, 9), (2, 15), (1, 16), (2, 17), (3, 301), (1, 304)],
         expect="refused: constrained by torch.export to Eq\\(16\\*s\\d+, 16\\*Min"),
    Case("las_listener_framed", "ASR", lambda: _seeded(ListenerTrimmed, PBLSTMLayerFramed),
         lambda b, t, g: (torch.randn(b, t, 10, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 40), [(3, 8), (1, 9), (2, 15), (1, 16), (2, 17), (3, 301), (1, 304)],
         expect="refused: tied to 8\\*s\\d+ by torch.export"),
    Case("las_listener_strided", "ASR", lambda: _seeded(ListenerTrimmed, PBLSTMLayerStrided),
         lambda b, t, g: (torch.randn(b, t, 10, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 40), [(3, 8), (1, 9), (2, 15), (1, 16), (2, 17), (3, 301), (1, 304)]),
    Case("crdnn_lstm", "ASR", lambda: _seeded(CRDNN), lambda b, t, g: (torch.randn(b, t, 20, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 24), [(3, 1), (1, 7), (2, 300)]),
    Case("crdnn_ligru", "ASR", lambda: _seeded(CRDNN, rnn="LiGRU"), lambda b, t, g: (torch.randn(b, t, 20, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 24), [(3, 1), (1, 7), (2, 300)],
         expect="refused: was specialised to 24"),
    Case("nhits_lstm", "forecasting", lambda: _seeded(NHiTSLSTM), lambda b, t, g: (torch.randn(b, t, 2, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 24), [(3, 1), (1, 7), (2, 9), (3, 300), (1, 301)]),
    Case("deepspeech2", "ASR", lambda: _seeded(DeepSpeech2), _ds2,
         {"x": {0: "batch", 3: "frames"}, "lengths": {0: "batch"}}, (2, 40), [(3, 1), (1, 7), (2, 8), (3, 300)]),
    Case("espnet_rnnp", "ASR", lambda: _seeded(ESPnetEncoderTensorLens), _espnet,
         {"xs_pad": {0: "batch", 1: "seq"}, "ilens": {0: "batch"}}, (3, 20), [(2, 1), (1, 7), (3, 8), (2, 301)]),
    Case("espnet_rnnp_list", "ASR", lambda: _seeded(ESPnetEncoder), _espnet,
         {"xs_pad": {0: "batch", 1: "seq"}, "ilens": {0: "batch"}}, (3, 20), [(2, 1), (1, 7), (3, 8), (2, 301)],
         expect="refused: the tracer froze a value computed from a tensor"),
    Case("rnnt_joint", "ASR", lambda: _seeded(RNNTJoint), _rnnt,
         {"enc": {0: "batch", 1: "frames"}, "labels": {0: "batch", 1: "labels"}}, (2, 20), [(3, 1), (1, 8), (2, 300)]),
    Case("gru4rec", "recommendation", lambda: _seeded(GRU4Rec), _gru4rec,
         {"input": {0: "seq", 1: "batch"}, "hidden": {1: "batch"}}, (3, 6), [(1, 1), (5, 4), (2, 300)]),
    Case("tft_lstm", "forecasting", lambda: _seeded(TFTLSTMSeq2Seq), _tft,
         {"past": {0: "batch", 1: "encoder"}, "future": {0: "batch", 1: "horizon"}, "static": {0: "batch"}}, (2, 24),
         [(3, 1), (1, 7), (2, 300)]),
    Case("bahdanau_nmt", "NMT", lambda: _seeded(BahdanauSeq2Seq), _nmt,
         {"src": {0: "batch", 1: "src_len"}, "src_lengths": {0: "batch"}, "trg": {0: "batch"}}, (3, 9),
         [(2, 1), (4, 6), (2, 300)]),
    Case("fullsubnet", "denoiser", lambda: _seeded(FullSubNetLike), lambda b, t, g: (torch.rand(b, 1, 17, t, generator=g),),
         {"noisy_mag": {0: "batch", 3: "frames"}}, (2, 24), [(3, 1), (1, 7), (2, 300)],),
    Case("tcn_lstm", "forecasting", lambda: _seeded(TCNLSTMForecaster), _tcn,
         {"x": {0: "batch", 1: "seq"}, "hour": {0: "batch", 1: "seq"}}, (2, 24), [(3, 1), (1, 7), (2, 300)]),
]}


def build(name: str) -> nn.Module:
    return CASES[name].factory()


def inputs(name: str, batch: int, seq: int, seed: int = 0) -> tuple:
    return CASES[name].inputs(batch, seq, _g(seed))
