"""Recurrent modules written the way published packages write them (issue 21 / 19 red team, tests/test_published_style.py).

Each is a small-weight rewrite from memory of a well-known architecture, its forward kept in that code's own idiom:
pyannote's PyanNet, asteroid's DPRNN, LSTNet, gluonts' DeepAR, AWD-LSTM, a char-CNN biLSTM-CRF, a CRN/DCCRN
denoiser, SB3's RecurrentPPO LSTM policy, Tacotron's CBHG and crnn.pytorch's CRNN. `CASES` says how each is fed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


# --- speaker segmentation: pyannote.audio PyanNet (SincNet-like front end + BiLSTM + Linear) ------------------------
class PyanNet(nn.Module):
    """Waveform (B, 1, samples) -> per-frame speaker activities (B, frames, classes)."""

    def __init__(self, classes: int = 3, hidden: int = 16):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([nn.Conv1d(1, 16, 25, stride=5), nn.Conv1d(16, 12, 5), nn.Conv1d(12, 12, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3, padding=0, dilation=1) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (16, 12, 12)])
        self.lstm = nn.LSTM(12, hidden, num_layers=2, bidirectional=True, batch_first=True, dropout=0.0)
        self.linear = nn.ModuleList([nn.Linear(2 * hidden, 16), nn.Linear(16, 16)])
        self.classifier = nn.Linear(16, classes)
        self.activation = nn.Sigmoid()

    def sincnet(self, waveforms):
        outputs = self.wav_norm1d(waveforms)
        for c, (conv1d, pool1d, norm1d) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d)):
            outputs = conv1d(outputs)
            if c == 0:  # SincNet's first layer: |sinc filters|
                outputs = torch.abs(outputs)
            outputs = F.leaky_relu(norm1d(pool1d(outputs)))
        return outputs

    def forward(self, waveforms):
        outputs = self.sincnet(waveforms)
        outputs, _ = self.lstm(outputs.permute(0, 2, 1))  # rearrange "batch feature frame -> batch frame feature"
        for linear in self.linear:
            outputs = F.leaky_relu(linear(outputs))
        return self.activation(self.classifier(outputs))


# --- speech separation: asteroid DPRNN masker (unfold into chunks, intra BiLSTM, inter LSTM, fold back) -------------
class SingleRNN(nn.Module):
    def __init__(self, rnn_type, input_size, hidden_size, bidirectional=False):
        super().__init__()
        self.rnn = getattr(nn, rnn_type)(input_size, hidden_size, 1, batch_first=True, bidirectional=bidirectional)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, inp):
        output, _ = self.rnn(inp)
        return output


class GlobLN(nn.Module):
    """asteroid's gLN: one mean/variance over channels and every frame."""

    def __init__(self, channels):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        dims = list(range(1, len(x.shape)))
        mean = x.mean(dim=dims, keepdim=True)
        var = torch.pow(x - mean, 2).mean(dim=dims, keepdim=True)
        shape = [-1] + [1] * (len(x.shape) - 2)
        return self.gamma.view(shape) * (x - mean) / (var + 1e-8).sqrt() + self.beta.view(shape)


class DPRNNBlock(nn.Module):
    def __init__(self, in_chan, hid_size, rnn_type="LSTM"):
        super().__init__()
        self.intra_RNN = SingleRNN(rnn_type, in_chan, hid_size, bidirectional=True)
        self.inter_RNN = SingleRNN(rnn_type, in_chan, hid_size, bidirectional=False)
        self.intra_linear = nn.Linear(self.intra_RNN.output_size, in_chan)
        self.intra_norm = GlobLN(in_chan)
        self.inter_linear = nn.Linear(self.inter_RNN.output_size, in_chan)
        self.inter_norm = GlobLN(in_chan)

    def forward(self, x):
        B, N, K, L = x.size()
        output = x  # for skip connection
        x = x.transpose(1, -1).reshape(B * L, K, N)
        x = self.intra_RNN(x)
        x = self.intra_linear(x)
        x = x.reshape(B, L, K, N).transpose(1, -1)
        x = self.intra_norm(x)
        output = output + x
        x = output.transpose(1, 2).transpose(2, -1).reshape(B * K, L, N)
        x = self.inter_RNN(x)
        x = self.inter_linear(x)
        x = x.reshape(B, K, L, N).transpose(1, -1).transpose(2, -1).contiguous()
        x = self.inter_norm(x)
        return output + x


class DPRNN(nn.Module):
    """Encoded mixture (B, n_filters, frames) -> masks (B, n_src, n_filters, frames)."""

    def __init__(self, in_chan=16, n_src=2, bn_chan=12, hid_size=8, chunk_size=10, hop_size=5, n_repeats=2):
        super().__init__()
        self.in_chan, self.n_src, self.bn_chan = in_chan, n_src, bn_chan
        self.chunk_size, self.hop_size = chunk_size, hop_size
        self.bottleneck = nn.Sequential(GlobLN(in_chan), nn.Conv1d(in_chan, bn_chan, 1))
        self.net = nn.Sequential(*[DPRNNBlock(bn_chan, hid_size) for _ in range(n_repeats)])
        self.first_out = nn.Sequential(nn.PReLU(), nn.Conv2d(bn_chan, n_src * bn_chan, 1))
        self.net_out = nn.Sequential(nn.Conv1d(bn_chan, bn_chan, 1), nn.Tanh())
        self.net_gate = nn.Sequential(nn.Conv1d(bn_chan, bn_chan, 1), nn.Sigmoid())
        self.mask_net = nn.Conv1d(bn_chan, in_chan, 1, bias=False)

    def forward(self, mixture_w):
        batch, n_filters, n_frames = mixture_w.size()
        output = self.bottleneck(mixture_w)
        output = F.unfold(output.unsqueeze(-1), kernel_size=(self.chunk_size, 1), padding=(self.chunk_size, 0),
                          stride=(self.hop_size, 1))
        n_chunks = output.shape[-1]
        output = output.reshape(batch, self.bn_chan, self.chunk_size, n_chunks)
        output = self.net(output)
        output = self.first_out(output)
        output = output.reshape(batch * self.n_src, self.bn_chan, self.chunk_size, n_chunks)
        to_unfold = self.bn_chan * self.chunk_size
        output = F.fold(output.reshape(batch * self.n_src, to_unfold, n_chunks), (n_frames, 1),
                        kernel_size=(self.chunk_size, 1), padding=(self.chunk_size, 0), stride=(self.hop_size, 1))
        output = output.reshape(batch * self.n_src, self.bn_chan, -1)
        output = self.net_out(output) * self.net_gate(output)
        est_mask = torch.relu(self.mask_net(output))
        return est_mask.view(batch, self.n_src, self.in_chan, n_frames)


# --- forecasting: LSTNet (conv + GRU + skip-GRU by a period + highway) ------------------------------------------------
class LSTNet(nn.Module):
    """History (B, T, m) -> next step (B, m). The window is the input's last `window` steps (older ones dropped)."""

    def __init__(self, m=4, window=48, hidC=8, hidR=10, hidS=4, Ck=6, skip=12, hw=8):
        super().__init__()
        self.m, self.P, self.hidC, self.hidR, self.hidS, self.Ck, self.skip, self.hw = m, window, hidC, hidR, hidS, Ck, skip, hw
        self.conv1 = nn.Conv2d(1, hidC, kernel_size=(Ck, m))
        self.GRU1 = nn.GRU(hidC, hidR)
        self.GRUskip = nn.GRU(hidC, hidS)
        self.linear1 = nn.Linear(hidR + skip * hidS, m)
        self.highway = nn.Linear(hw, 1)
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        if x.size(1) > self.P:  # only the last window counts
            x = x[:, -self.P:]
        batch_size = x.size(0)
        c = x.view(batch_size, 1, x.size(1), self.m)
        c = self.dropout(F.relu(self.conv1(c)))
        c = torch.squeeze(c, 3)
        r = c.permute(2, 0, 1).contiguous()
        _, r = self.GRU1(r)
        r = self.dropout(torch.squeeze(r, 0))
        pt = c.size(2) // self.skip
        s = c[:, :, -pt * self.skip:].contiguous()
        s = s.view(batch_size, self.hidC, pt, self.skip)
        s = s.permute(2, 0, 3, 1).contiguous()
        s = s.view(pt, batch_size * self.skip, self.hidC)
        _, s = self.GRUskip(s)
        s = self.dropout(s.view(batch_size, self.skip * self.hidS))
        res = self.linear1(torch.cat((r, s), 1))
        z = x[:, -self.hw:, :].permute(0, 2, 1).contiguous().view(-1, self.hw)
        return torch.sigmoid(res + self.highway(z).view(-1, self.m))


# --- forecasting: gluonts DeepAR (lags gathered by index, covariates, LSTM, distribution head) -----------------------
def lagged_sequence_values(indices, prior_sequence, sequence, dim):
    full_sequence = torch.cat((prior_sequence, sequence), dim=dim)
    lags_values = []
    for lag_index in indices:
        begin_index = -lag_index - sequence.shape[dim]
        end_index = -lag_index if lag_index > 0 else None
        lags_values.append(full_sequence[:, begin_index:end_index, ...])
    lags = torch.stack(lags_values, dim=-1)
    return lags.reshape(lags.shape[0], lags.shape[1], -1)


class DeepAR(nn.Module):
    """(past_target (B, L), past_observed (B, L), past_time_feat (B, L - max_lag, F), feat_static_cat (B, 1)) ->
    Student-t args (df, loc, scale) per context step, gluonts' unroll_lagged_rnn on the context."""

    def __init__(self, lags_seq=(0, 1, 2, 6, 13), time_feat=3, cardinality=5, hidden=12, min_scale=1e-10):
        super().__init__()
        self.lags_seq, self.max_lag, self.min_scale = list(lags_seq), max(lags_seq), min_scale
        self.embedder = nn.Embedding(cardinality, 3)
        self.rnn = nn.LSTM(len(lags_seq) + time_feat + 3 + 1, hidden, num_layers=2, batch_first=True)
        self.proj = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(3)])

    def scaler(self, data, observed):
        ts_sum = (data * observed).abs().sum(1, keepdim=True)
        num_observed = observed.sum(1, keepdim=True)
        scale = ts_sum / torch.clamp(num_observed, min=1)
        batch_sum, batch_observations = ts_sum.sum(0), torch.clamp(num_observed.sum(0), min=1)
        default_scale = torch.squeeze(batch_sum / batch_observations)
        scale = torch.where(num_observed > 0, scale, default_scale)
        scale = torch.clamp(scale, min=self.min_scale)
        return data / scale, scale

    def forward(self, past_target, past_observed, past_time_feat, feat_static_cat):
        context = past_target[:, self.max_lag:]
        observed_context = past_observed[:, self.max_lag:]
        _, scale = self.scaler(context, observed_context)
        prior_input = past_target[:, : self.max_lag] / scale
        lags = lagged_sequence_values(self.lags_seq, prior_input, context / scale, dim=-1)
        static = torch.cat((self.embedder(feat_static_cat[:, 0]), scale.log()), dim=1)
        static = static.unsqueeze(1).expand(-1, lags.shape[1], -1)
        output, _ = self.rnn(torch.cat((lags, past_time_feat, static), dim=-1))
        df = 2.0 + F.softplus(self.proj[0](output)).squeeze(-1)
        loc = self.proj[1](output).squeeze(-1) * scale
        sigma = F.softplus(self.proj[2](output)).squeeze(-1) * scale
        return df, loc, sigma


# --- language model: AWD-LSTM (embedding, 3 LSTMs of different sizes, tied decoder, seq-major, hidden list) ----------
class DropConnect(nn.Module):
    """WeightDrop as a parametrization of weight_hh (identity in eval)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, w):
        return F.dropout(w, self.p, self.training)


class AWDLSTM(nn.Module):
    """tokens (T, B), hidden [(h, c)] * 3 -> (logits (T*B, ntoken), new hidden)."""

    def __init__(self, ntoken=50, ninp=10, nhid=14, nlayers=3, wdrop=0.5):
        super().__init__()
        from torch.nn.utils import parametrize

        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnns = nn.ModuleList([nn.LSTM(ninp if i == 0 else nhid, nhid if i != nlayers - 1 else ninp, 1) for i in range(nlayers)])
        for rnn in self.rnns:
            parametrize.register_parametrization(rnn, "weight_hh_l0", DropConnect(wdrop))
        self.decoder = nn.Linear(ninp, ntoken)
        self.decoder.weight = self.encoder.weight
        self.ninp, self.nhid, self.nlayers = ninp, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.encoder(input)
        raw_output, new_hidden = emb, []
        for i, rnn in enumerate(self.rnns):
            raw_output, new_h = rnn(raw_output, hidden[i])
            new_hidden.append(new_h)
        output = raw_output
        result = output.view(output.size(0) * output.size(1), output.size(2))
        return self.decoder(result), new_hidden


# --- NER tagger: biLSTM-CRF with a char CNN, packed; the emissions and the CRF's transitions --------------------------
class CharCNNCRFTagger(nn.Module):
    """(words (B, T), chars (B, T, W), lengths (B,)) -> (emissions (B, T, tags), transitions, start, end), masked."""

    def __init__(self, vocab=40, n_chars=20, tags=5, hidden=10):
        super().__init__()
        self.char_embeddings = nn.Embedding(n_chars, 6, padding_idx=0)
        self.char_cnn = nn.Conv1d(6, 8, kernel_size=3, padding=1)
        self.word_embeddings = nn.Embedding(vocab, 12, padding_idx=0)
        self.dropout = nn.Dropout(0.5)
        self.lstm = nn.LSTM(20, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.hidden2tag = nn.Linear(2 * hidden, tags)
        self.transitions = nn.Parameter(torch.randn(tags, tags) * 0.1)
        self.start_transitions = nn.Parameter(torch.randn(tags) * 0.1)
        self.end_transitions = nn.Parameter(torch.randn(tags) * 0.1)

    def forward(self, words, chars, lengths):
        batch_size, seq_len, word_len = chars.size()
        char_embeds = self.char_embeddings(chars.view(-1, word_len)).transpose(2, 1).contiguous()
        char_feats = F.max_pool1d(self.char_cnn(char_embeds), char_embeds.size(2)).view(batch_size, seq_len, -1)
        embeds = self.dropout(torch.cat([self.word_embeddings(words), char_feats], 2))
        packed = pack_padded_sequence(embeds, lengths, batch_first=True, enforce_sorted=False)
        lstm_out, _ = self.lstm(packed)
        lstm_out, _ = pad_packed_sequence(lstm_out, batch_first=True, total_length=seq_len)
        mask = (torch.arange(seq_len).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        emissions = self.hidden2tag(self.dropout(lstm_out)) * mask
        return emissions, self.transitions, self.start_transitions, self.end_transitions


class ViterbiCRFTagger(CharCNNCRFTagger):
    """The same tagger decoding in forward (pytorch-crf's _viterbi_decode: a Python loop over the time steps)."""

    def forward(self, words, chars, lengths):
        emissions = super().forward(words, chars, lengths)[0]
        seq_len = emissions.size(1)
        mask = torch.arange(seq_len).unsqueeze(0) < lengths.unsqueeze(1)
        score = self.start_transitions + emissions[:, 0]
        history = []
        for i in range(1, seq_len):
            next_score = score.unsqueeze(2) + self.transitions + emissions[:, i].unsqueeze(1)
            next_score, indices = next_score.max(dim=1)
            score = torch.where(mask[:, i].unsqueeze(1), next_score, score)
            history.append(indices)
        return score + self.end_transitions


# --- denoiser: CRN / DCCRN-style (conv encoder over frequency, causal in time, LSTM, decoder with skips, complex mask) -
class CausalConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=(2, 3), stride=(1, 2), padding=(1, 0))
        self.norm = nn.BatchNorm2d(cout)
        self.activation = nn.ELU()

    def forward(self, x):  # (B, C, T, F)
        x = self.conv(x)
        x = x[:, :, :-1, :]  # chomp the frame the time padding added at the end
        return self.activation(self.norm(x))


class CausalTransConvBlock(nn.Module):
    def __init__(self, cin, cout, is_last=False, output_padding=(0, 0)):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, kernel_size=(2, 3), stride=(1, 2), output_padding=output_padding)
        self.norm = nn.BatchNorm2d(cout)
        self.activation = nn.Identity() if is_last else nn.ELU()

    def forward(self, x):
        x = self.conv(x)
        x = x[:, :, :-1, :]
        return self.activation(self.norm(x))


class CRNDenoiser(nn.Module):
    """Noisy spectrum as real/imag (B, T, F=33, 2) -> enhanced spectrum (B, T, F, 2) by a bounded complex mask."""

    def __init__(self, hidden=24, rnn="LSTM"):
        super().__init__()
        self.conv_block_1 = CausalConvBlock(2, 8)  # 33 -> 16
        self.conv_block_2 = CausalConvBlock(8, 8)  # 16 -> 7
        self.conv_block_3 = CausalConvBlock(8, 12)  # 7 -> 3
        self.rnn_layer = getattr(nn, rnn)(input_size=36, hidden_size=hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, 36)
        self.tran_conv_block_1 = CausalTransConvBlock(12 + 12, 8)  # 3 -> 7
        self.tran_conv_block_2 = CausalTransConvBlock(8 + 8, 8, output_padding=(0, 1))  # 7 -> 16
        self.tran_conv_block_3 = CausalTransConvBlock(8 + 8, 2, is_last=True)  # 16 -> 33

    def forward(self, spec):
        x = spec.permute(0, 3, 1, 2)  # (B, 2, T, F)
        e1 = self.conv_block_1(x)
        e2 = self.conv_block_2(e1)
        e3 = self.conv_block_3(e2)
        batch_size, n_channels, n_frames, n_bins = e3.shape
        lstm_in = e3.permute(0, 2, 1, 3).reshape(batch_size, n_frames, n_channels * n_bins)
        lstm_out, _ = self.rnn_layer(lstm_in)
        lstm_out = self.fc(lstm_out).reshape(batch_size, n_frames, n_channels, n_bins).permute(0, 2, 1, 3)
        d1 = self.tran_conv_block_1(torch.cat((lstm_out, e3), 1))
        d2 = self.tran_conv_block_2(torch.cat((d1, e2), 1))
        mask = self.tran_conv_block_3(torch.cat((d2, e1), 1))
        mask_real, mask_imag = mask[:, 0], mask[:, 1]
        mask_mags = torch.tanh((mask_real ** 2 + mask_imag ** 2 + 1e-8) ** 0.5)
        mask_phase = torch.atan2(mask_imag, mask_real)
        spec_mags = (x[:, 0] ** 2 + x[:, 1] ** 2 + 1e-8) ** 0.5
        spec_phase = torch.atan2(x[:, 1], x[:, 0])
        est_mags, est_phase = mask_mags * spec_mags, spec_phase + mask_phase
        return torch.stack((est_mags * torch.cos(est_phase), est_mags * torch.sin(est_phase)), -1)  # (B, T, F, 2)


class RNNoise(nn.Module):
    """RNNoise (Valin 2018): frame features (B, T, 42) -> (band gains (B, T, 22), VAD (B, T, 1)); three GRUs, each fed
    the outputs of the ones before (the reference `rnn_train.py` topology)."""

    def __init__(self, features=42, bands=22):
        super().__init__()
        self.input_dense = nn.Linear(features, 24)
        self.vad_gru = nn.GRU(24, 24, batch_first=True)
        self.vad_output = nn.Linear(24, 1)
        self.noise_gru = nn.GRU(24 + 24 + features, 48, batch_first=True)
        self.denoise_gru = nn.GRU(24 + 48 + features, 96, batch_first=True)
        self.denoise_output = nn.Linear(96, bands)

    def forward(self, x):
        tmp = torch.tanh(self.input_dense(x))
        vad_gru, _ = self.vad_gru(tmp)
        vad_gru = F.relu(vad_gru)
        vad_output = torch.sigmoid(self.vad_output(vad_gru))
        noise_gru, _ = self.noise_gru(torch.cat([tmp, vad_gru, x], -1))
        noise_gru = F.relu(noise_gru)
        denoise_gru, _ = self.denoise_gru(torch.cat([vad_gru, noise_gru, x], -1))
        denoise_gru = F.relu(denoise_gru)
        return torch.sigmoid(self.denoise_output(denoise_gru)), vad_output


class CRNMasker(nn.Module):
    """The CRN encoder alone (Conv2d over (time, frequency), padded (1, 0) then the last frame chomped: causal in time)
    -> 2-layer GRU -> a magnitude mask per frame: noisy magnitude (B, T, F=33) -> mask (B, T, F)."""

    def __init__(self, hidden=24):
        super().__init__()
        self.encoder = nn.Sequential(CausalConvBlock(1, 8), CausalConvBlock(8, 8), CausalConvBlock(8, 12))
        self.gru = nn.GRU(36, hidden, num_layers=2, batch_first=True)
        self.mask = nn.Linear(hidden, 33)

    def forward(self, mag):
        e = self.encoder(mag.unsqueeze(1))  # (B, 12, T, 3)
        b, c, t, f = e.shape
        y, _ = self.gru(e.permute(0, 2, 1, 3).reshape(b, t, c * f))
        return torch.sigmoid(self.mask(y))


# --- RL: SB3 RecurrentPPO-style LSTM actor-critic --------------------------------------------------------------------
class RecurrentPolicy(nn.Module):
    """One step for n envs: (obs (n, obs_dim), h, c (1, n, H), episode_starts (n,)) -> (logits, value, h, c).
    The episode-start reset is written with torch.where (SB3's loop multiplies by (1 - start))."""

    def __init__(self, obs_dim=6, hidden=16, actions=4):
        super().__init__()
        self.features = nn.Flatten()
        self.lstm_actor = nn.LSTM(obs_dim, hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 16), nn.Tanh())
        self.action_net = nn.Linear(16, actions)
        self.value_net = nn.Linear(16, 1)

    def forward(self, obs, h, c, episode_starts):
        features = self.features(obs.float())
        n_seq = h.shape[1]
        features_sequence = features.reshape((n_seq, -1, self.lstm_actor.input_size)).swapaxes(0, 1)
        start = episode_starts.reshape(1, n_seq, 1) > 0.5
        h = torch.where(start, torch.zeros_like(h), h)
        c = torch.where(start, torch.zeros_like(c), c)
        lstm_output, (hn, cn) = self.lstm_actor(features_sequence, (h, c))
        latent = self.mlp(torch.flatten(lstm_output.transpose(0, 1), start_dim=0, end_dim=1))
        return self.action_net(latent), self.value_net(latent), hn, cn


class RecurrentPolicyLoop(RecurrentPolicy):
    """SB3's _process_sequence loop over a rollout: obs (n, T, obs_dim), episode_starts (n, T), state reset per step."""

    def forward(self, obs, h, c, episode_starts):
        features_sequence = self.features(obs.float()).reshape(obs.shape[0], obs.shape[1], -1).swapaxes(0, 1)
        starts = episode_starts.swapaxes(0, 1)
        lstm_states, lstm_output = (h, c), []
        for features, episode_start in zip(features_sequence, starts):
            hidden, lstm_states = self.lstm_actor(features.unsqueeze(dim=0), (
                (1.0 - episode_start).view(1, -1, 1) * lstm_states[0],
                (1.0 - episode_start).view(1, -1, 1) * lstm_states[1]))
            lstm_output += [hidden]
        latent = self.mlp(torch.flatten(torch.cat(lstm_output).transpose(0, 1), start_dim=0, end_dim=1))
        return self.action_net(latent), self.value_net(latent)


# --- TTS: Tacotron prenet + CBHG (conv bank, max-pool, projections, highway, BiGRU) -----------------------------------
class BatchNormConv1d(nn.Module):
    def __init__(self, in_dim, out_dim, kernel_size, padding, activation=None):
        super().__init__()
        self.conv1d = nn.Conv1d(in_dim, out_dim, kernel_size=kernel_size, stride=1, padding=padding, bias=False)
        self.bn = nn.BatchNorm1d(out_dim, momentum=0.99, eps=1e-3)
        self.activation = activation

    def forward(self, x):
        x = self.conv1d(x)
        if self.activation is not None:
            x = self.activation(x)
        return self.bn(x)


class Highway(nn.Module):
    def __init__(self, in_size, out_size):
        super().__init__()
        self.H = nn.Linear(in_size, out_size)
        self.H.bias.data.zero_()
        self.T = nn.Linear(in_size, out_size)
        self.T.bias.data.fill_(-1)

    def forward(self, inputs):
        H = F.relu(self.H(inputs))
        T = torch.sigmoid(self.T(inputs))
        return H * T + inputs * (1.0 - T)


class TacotronEncoder(nn.Module):
    """(character ids (B, T), lengths (B,)) -> encoder outputs (B, T, 2 * in_dim): embedding, prenet, CBHG."""

    def __init__(self, n_vocab=30, in_dim=8, K=4):
        super().__init__()
        self.in_dim = in_dim
        self.embedding = nn.Embedding(n_vocab, 12)
        self.prenet = nn.ModuleList([nn.Linear(12, 16), nn.Linear(16, in_dim)])
        self.conv1d_banks = nn.ModuleList([BatchNormConv1d(in_dim, in_dim, k, k // 2, nn.ReLU()) for k in range(1, K + 1)])
        self.max_pool1d = nn.MaxPool1d(kernel_size=2, stride=1, padding=1)
        self.conv1d_projections = nn.ModuleList([BatchNormConv1d(K * in_dim, in_dim, 3, 1, nn.ReLU()),
                                                 BatchNormConv1d(in_dim, in_dim, 3, 1, None)])
        self.highways = nn.ModuleList([Highway(in_dim, in_dim) for _ in range(4)])
        self.gru = nn.GRU(in_dim, in_dim, 1, batch_first=True, bidirectional=True)

    def cbhg(self, inputs, input_lengths):
        x = inputs
        if x.size(-1) == self.in_dim:  # (B, T, in_dim) -> (B, in_dim, T)
            x = x.transpose(1, 2)
        T = x.size(-1)
        x = torch.cat([conv1d(x)[:, :, :T] for conv1d in self.conv1d_banks], dim=1)
        x = self.max_pool1d(x)[:, :, :T]
        for conv1d in self.conv1d_projections:
            x = conv1d(x)
        x = x.transpose(1, 2)
        x += inputs
        for highway in self.highways:
            x = highway(x)
        x = pack_padded_sequence(x, input_lengths, batch_first=True)
        outputs, _ = self.gru(x)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True)
        return outputs

    def forward(self, chars, input_lengths):
        x = self.embedding(chars)
        for linear in self.prenet:
            x = F.dropout(F.relu(linear(x)), p=0.5, training=self.training)
        return self.cbhg(x, input_lengths)


# --- OCR: crnn.pytorch CRNN (VGG-ish convs with (2, 1) pools, BiLSTM, per-column log_softmax) -------------------------
class BidirectionalLSTM(nn.Module):
    def __init__(self, nIn, nHidden, nOut):
        super().__init__()
        self.rnn = nn.LSTM(nIn, nHidden, bidirectional=True)
        self.embedding = nn.Linear(nHidden * 2, nOut)

    def forward(self, input):
        recurrent, _ = self.rnn(input)
        T, b, h = recurrent.size()
        output = self.embedding(recurrent.view(T * b, h))
        return output.view(T, b, -1)


class CRNNOCR(nn.Module):
    """Text line image (B, 1, 32, W) -> (W / 4 + 1, B, classes) log-probabilities for CTC."""

    def __init__(self, nclass=11, nh=12):
        super().__init__()
        ks, ps, ss, nm = [3, 3, 3, 3, 3, 3, 2], [1, 1, 1, 1, 1, 1, 0], [1] * 7, [8, 8, 12, 12, 16, 16, 16]
        cnn = nn.Sequential()

        def convRelu(i, batchNormalization=False):
            nIn = 1 if i == 0 else nm[i - 1]
            cnn.add_module(f"conv{i}", nn.Conv2d(nIn, nm[i], ks[i], ss[i], ps[i]))
            if batchNormalization:
                cnn.add_module(f"batchnorm{i}", nn.BatchNorm2d(nm[i]))
            cnn.add_module(f"relu{i}", nn.ReLU(True))

        convRelu(0)
        cnn.add_module("pooling0", nn.MaxPool2d(2, 2))
        convRelu(1)
        cnn.add_module("pooling1", nn.MaxPool2d(2, 2))
        convRelu(2, True)
        convRelu(3)
        cnn.add_module("pooling2", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        convRelu(4, True)
        convRelu(5)
        cnn.add_module("pooling3", nn.MaxPool2d((2, 2), (2, 1), (0, 1)))
        convRelu(6, True)
        self.cnn = cnn
        self.rnn = nn.Sequential(BidirectionalLSTM(16, nh, nh), BidirectionalLSTM(nh, nh, nclass))

    def forward(self, input):
        conv = self.cnn(input)
        b, c, h, w = conv.size()
        assert h == 1, "the height of conv must be 1"
        conv = conv.squeeze(2).permute(2, 0, 1)  # [w, b, c]
        return F.log_softmax(self.rnn(conv), dim=2)


class PaddedCRNNOCR(CRNNOCR):
    """Text recognisers pad a narrow crop up to a minimum width (white) before the CNN: a branch on the width."""

    min_width = 32

    def forward(self, input):
        if input.size(3) < self.min_width:
            input = F.pad(input, (0, self.min_width - input.size(3)), value=1.0)
        return super().forward(input)


# --- cases ------------------------------------------------------------------------------------------------------------
def _seeded(cls, *args, **kw) -> nn.Module:
    torch.manual_seed(sum(map(ord, cls.__name__)))
    module = cls(*args, **kw)
    for m in module.modules():  # batch norms with non-trivial statistics, as a trained model has
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return module.eval()


def _lengths(b, t, g):
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    return lengths


def _words_chars(b, t, g):
    lengths = _lengths(b, t, g)
    mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
    words = torch.randint(1, 40, (b, t), generator=g) * mask
    chars = torch.randint(1, 20, (b, t, 5 + t % 3), generator=g) * mask.unsqueeze(-1)
    return words, chars, lengths


def _deepar(b, t, g):  # t = context length; the target has max_lag (13) more steps
    target = torch.rand(b, t + 13, generator=g) * 10
    observed = (torch.rand(b, t + 13, generator=g) > 0.1).float()
    return target, observed, torch.randn(b, t, 3, generator=g), torch.randint(0, 5, (b, 1), generator=g)


def _awd(b, t, g):
    hidden = [(torch.randn(1, b, n, generator=g), torch.randn(1, b, n, generator=g)) for n in (14, 14, 10)]
    return torch.randint(0, 50, (t, b), generator=g), hidden


def _sorted_chars(b, t, g):
    lengths = torch.sort(_lengths(b, t, g), descending=True).values
    return torch.randint(0, 30, (b, t), generator=g), lengths


def _policy(b, t, g):
    return (torch.randn(b, 6, generator=g), torch.randn(1, b, 16, generator=g), torch.randn(1, b, 16, generator=g),
            (torch.rand(b, generator=g) > 0.5).float())


def _rollout(b, t, g):
    return (torch.randn(b, t, 6, generator=g), torch.randn(1, b, 16, generator=g), torch.randn(1, b, 16, generator=g),
            (torch.rand(b, t, generator=g) > 0.8).float())


@dataclass
class Case:
    name: str
    domain: str
    factory: Callable[[], nn.Module]
    inputs: Callable  # (batch, seq, generator) -> tuple of inputs
    dynamic_axes: dict
    example: tuple[int, int]  # (batch, seq) of the export example
    probes: list  # (batch, seq) pairs checked independently: unseen, seq 1 where torch runs, >= 300, both sides of branches
    stream: bool = False  # also --target stream (time on axis 1)
    expect: str = "exports"  # or "refused: <words the refusal carries>"
    export_options: dict = field(default_factory=dict)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


CASES = {c.name: c for c in [
    Case("pyannet", "speaker segmentation", lambda: _seeded(PyanNet), lambda b, t, g: (torch.randn(b, 1, t, generator=g),),
         {"waveforms": {0: "batch", 2: "samples"}}, (2, 2000), [(3, 560), (1, 1234), (2, 9000)]),
    Case("dprnn", "speech separation", lambda: _seeded(DPRNN), lambda b, t, g: (torch.randn(b, 16, t, generator=g),),
         {"mixture_w": {0: "batch", 2: "frames"}}, (2, 37), [(3, 1), (1, 4), (2, 5), (3, 11), (1, 300)]),
    Case("lstnet", "forecasting", lambda: _seeded(LSTNet), lambda b, t, g: (torch.randn(b, t, 4, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 40), [(3, 17), (1, 29), (2, 47), (3, 48), (2, 49), (1, 300)],
         expect="refused: constrained by torch.export"),
    Case("lstnet_window", "forecasting", lambda: _seeded(LSTNet), lambda b, t, g: (torch.randn(b, 48, 4, generator=g),),
         {"x": {0: "batch"}}, (2, 48), [(1, 48), (3, 48), (17, 48)]),
    Case("deepar", "forecasting", lambda: _seeded(DeepAR), _deepar,
         {"past_target": {0: "batch", 1: "past"}, "past_observed": {0: "batch", 1: "past"},
          "past_time_feat": {0: "batch", 1: "context"}, "feat_static_cat": {0: "batch"}}, (2, 24),
         [(3, 1), (1, 7), (2, 300)]),
    Case("awd_lstm", "language model", lambda: _seeded(AWDLSTM), _awd, {"input": {0: "seq", 1: "batch"}}, (2, 12),
         [(3, 1), (1, 5), (2, 300)], export_options={"default_axes": True}),
    Case("crf_tagger", "NER tagger", lambda: _seeded(CharCNNCRFTagger), _words_chars,
         {"words": {0: "batch", 1: "seq"}, "chars": {0: "batch", 1: "seq", 2: "word"}, "lengths": {0: "batch"}}, (3, 9),
         [(2, 1), (4, 6), (2, 300)]),
    Case("viterbi_tagger", "NER tagger", lambda: _seeded(ViterbiCRFTagger), _words_chars,
         {"words": {0: "batch", 1: "seq"}, "chars": {0: "batch", 1: "seq", 2: "word"}, "lengths": {0: "batch"}}, (3, 9),
         [(2, 4), (4, 6)], expect="refused: was specialised to"),
    Case("crn_denoiser", "denoiser", lambda: _seeded(CRNDenoiser), lambda b, t, g: (torch.randn(b, t, 33, 2, generator=g),),
         {"spec": {0: "batch", 1: "frames"}}, (2, 24), [(3, 1), (1, 7), (2, 300)]),
    Case("crn_gru_denoiser", "denoiser", lambda: _seeded(CRNDenoiser, rnn="GRU"),
         lambda b, t, g: (torch.randn(b, t, 33, 2, generator=g),), {"spec": {0: "batch", 1: "frames"}}, (2, 24),
         [(3, 1), (2, 301)]),
    Case("rnnoise", "denoiser", lambda: _seeded(RNNoise), lambda b, t, g: (torch.randn(b, t, 42, generator=g),),
         {"x": {0: "batch", 1: "seq"}}, (2, 24), [(3, 1), (1, 7), (2, 300)], stream=True),
    Case("crn_masker", "denoiser", lambda: _seeded(CRNMasker), lambda b, t, g: (torch.rand(b, t, 33, generator=g),),
         {"mag": {0: "batch", 1: "frames"}}, (2, 24), [(3, 1), (1, 7), (2, 300)], stream=True),
    Case("recurrent_ppo", "RL policy", lambda: _seeded(RecurrentPolicy), _policy,
         {"obs": {0: "n_envs"}, "h": {1: "n_envs"}, "c": {1: "n_envs"}, "episode_starts": {0: "n_envs"}}, (3, 1),
         [(1, 1), (5, 1), (16, 1)]),
    Case("recurrent_ppo_loop", "RL policy", lambda: _seeded(RecurrentPolicyLoop), _rollout,
         {"obs": {0: "n_envs", 1: "seq"}, "h": {1: "n_envs"}, "c": {1: "n_envs"}, "episode_starts": {0: "n_envs", 1: "seq"}},
         (3, 8), [(2, 5)], expect="refused: was specialised to"),
    Case("tacotron_cbhg", "TTS encoder", lambda: _seeded(TacotronEncoder), _sorted_chars,
         {"chars": {0: "batch", 1: "seq"}, "input_lengths": {0: "batch"}}, (3, 11), [(2, 1), (4, 6), (2, 300)]),
    Case("crnn_ocr", "OCR", lambda: _seeded(CRNNOCR), lambda b, t, g: (torch.rand(b, 1, 32, t, generator=g),),
         {"input": {0: "batch", 3: "width"}}, (2, 100), [(3, 16), (1, 37), (2, 1200)]),
    Case("crnn_ocr_padded", "OCR", lambda: _seeded(PaddedCRNNOCR), lambda b, t, g: (torch.rand(b, 1, 32, t, generator=g),),
         {"input": {0: "batch", 3: "width"}}, (2, 100), [(3, 1), (2, 7), (1, 31), (2, 32), (3, 33), (2, 300)]),
]}


def build(name: str) -> nn.Module:
    return CASES[name].factory()


def inputs(name: str, batch: int, seq: int, seed: int = 0) -> tuple:
    return CASES[name].inputs(batch, seq, _g(seed))
