"""Providers with options (onnxruntime's own form and the CLI's --provider-option), the fallbacks onnxruntime hides,
the known-wrong table (rnnedge.runtime.known_wrong), and verify saying which providers it checked."""
from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rnnedge.cli import cli
from rnnedge.errors import BadInputError
from rnnedge.runtime import Session, known_wrong
from rnnedge.runtime import providers as prov
from rnnedge.runtime.provider_options import cli_providers, option_error, parse_option_texts

try:
    from tests import runtime_models as rm
except ImportError:  # tests/ is not a package
    import runtime_models as rm

CPU, CUDA, OV = "CPUExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"


@pytest.fixture(scope="module")
def lengths_file(tmp_path_factory):
    """A GRU classifier whose GRU node takes sequence_lens from a `lengths` input (symbolic batch and seq)."""
    path = tmp_path_factory.mktemp("providers") / "gru-lengths.onnx"
    onnx.save(rm.rnn_model(cell="gru", head="classify", lengths=True), str(path))
    return path


def _x(batch=2, seq=6):
    return np.random.default_rng(0).standard_normal((batch, seq, 5)).astype(np.float32)


# -- the API's form: names and (name, options) pairs ------------------------------------------------


def test_entries_take_onnxruntimes_form_and_short_names():
    avail = [CUDA, CPU]
    assert prov.provider_entries([("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], avail) == \
        [(CUDA, {"device_id": "0"}), (CPU, {})]  # values as strings, as onnxruntime makes them
    assert prov.provider_entries(("cuda", {"device_id": 1}), avail) == [(CUDA, {"device_id": "1"}), (CPU, {})]
    assert prov.provider_entries([("cuda", {"gpu_mem_limit": 2**30})], avail)[-1] == (CPU, {})  # CPU always last
    assert prov.provider_entries(["cpu", ("cpu", {})], avail) == [(CPU, {})]
    assert prov.select_providers([("cuda", {"device_id": 0}), "cpu"], avail) == [CUDA, CPU]  # names alone, as before
    with pytest.raises(BadInputError, match="given twice, with different options"):
        prov.provider_entries([("cuda", {"device_id": 0}), ("cuda", {"device_id": 1})], avail)
    with pytest.raises(BadInputError, match=r"a name or a \(name, \{option: value\}\) pair"):
        prov.provider_entries([("cuda", "device_id=0")], avail)
    with pytest.raises(BadInputError, match="not available"):
        prov.provider_entries([("cuda", {"device_id": 0})], [CPU])  # the one provider asked for is not there


def test_options_reach_onnxruntime(monkeypatch, lengths_file):
    seen = []
    real = ort.InferenceSession

    def spy(model, options=None, providers=None, provider_options=None, **kw):
        seen.append(list(zip(providers, provider_options)))
        return real(model, options, providers=providers, provider_options=provider_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    Session(lengths_file, providers=[("cpu", {"use_arena": 0})])
    assert seen == [[(CPU, {"use_arena": "0"})]]


def test_cpu_options_are_said_to_be_ignored(lengths_file, caplog):
    """onnxruntime's CPU provider takes no provider options (threads are a session option): logged, not silent."""
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        prov.open_session(lengths_file, providers=[("cpu", {"intra_op_num_threads": 1})])
    assert any("does not report the option(s) intra_op_num_threads" in r.getMessage() for r in caplog.records)


@pytest.fixture
def fake_cuda(monkeypatch):
    """onnxruntime claims CUDA; `behaviour` says what a session asked to use it does."""
    real = ort.InferenceSession
    state = {"behaviour": "ok", "opened": []}

    def fake(model, options=None, providers=None, provider_options=None, **kw):
        state["opened"].append(list(providers))
        if CUDA in providers and state["behaviour"] == "unknown option":
            raise RuntimeError("/onnxruntime/cuda_provider_factory.cc:42 onnxruntime::ProviderOptions "
                               "onnxruntime::CudaProviderOptionsParser(const ProviderOptions&) Unknown provider option: 'devcie_id'.")
        keep = [(p, o) for p, o in zip(providers, provider_options) if p == CPU]  # "dropped": CUDA did not start
        return real(model, options, providers=[p for p, _ in keep], provider_options=[o for _, o in keep], **kw)

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", fake)
    return state


def test_an_option_onnxruntime_rejects_is_one_line_and_no_cpu_run(lengths_file, fake_cuda):
    fake_cuda["behaviour"] = "unknown option"
    with pytest.raises(BadInputError, match=r"onnxruntime refused the options \{'devcie_id': '0'\} of CUDAExecutionProvider: "
                                            r"Unknown provider option: 'devcie_id'") as info:
        prov.open_session(lengths_file, providers=[("cuda", {"devcie_id": 0})])
    assert "\n" not in str(info.value) and fake_cuda["opened"] == [[CUDA, CPU]]  # no silent retry on CPU


def test_a_provider_onnxruntime_drops_is_a_logged_fallback(lengths_file, fake_cuda, caplog):
    """onnxruntime drops a provider whose option value it refuses and says so on stderr only (measured with
    onnxruntime-openvino: precision=XX); rnnedge logs it, and refuses it where a fallback would mislead (verify)."""
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        session = prov.open_session(lengths_file, providers=[("cuda", {"device_id": 7})])
    assert session.get_providers() == [CPU]
    assert any("did not start CUDAExecutionProvider" in r.getMessage() and "'device_id': '7'" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(BadInputError, match="did not start CUDAExecutionProvider"):
        prov.open_session(lengths_file, providers=[("cuda", {"device_id": 7})], fallback=False)


def test_option_error_reads_only_option_refusals():
    entries = [(OV, {"foo": "1"}), (CPU, {})]
    err = RuntimeError("/onnxruntime/pybind_state.cc:1053 std::shared_ptr<X> onnxruntime::python::Create(const onnxruntime::"
                       "SessionOptions&, const std::string&) Invalid OpenVINO EP option: foo")
    assert str(option_error(entries, err)) == "onnxruntime refused the options {'foo': '1'} of OpenVINOExecutionProvider: " \
                                              "Invalid OpenVINO EP option: foo"
    assert option_error(entries, RuntimeError("CUDA driver version is insufficient")) is None
    assert option_error([(CUDA, {}), (CPU, {})], RuntimeError("bad option")) is None  # no options given: not theirs


# -- the command line -------------------------------------------------------------------------------


def test_cli_option_texts():
    assert cli_providers(["cuda"], ["device_id=0", "gpu_mem_limit=1024"]) == [("cuda", {"device_id": "0", "gpu_mem_limit": "1024"})]
    assert cli_providers(["cuda", "cpu"], ["cuda:device_id=1"]) == [("cuda", {"device_id": "1"}), "cpu"]
    assert cli_providers([], []) == "auto" and cli_providers(["cuda"], []) == "cuda"
    assert parse_option_texts(["cache_dir=C:/x=y"], ["openvino"]) == {"openvino": {"cache_dir": "C:/x=y"}}
    for names, texts, said in ((["auto"], ["device_id=0"], "name the provider"), (["cuda", "cpu"], ["device_id=0"], "PROVIDER:KEY=VALUE"),
                               (["cuda"], ["device_id"], "expected KEY=VALUE"), (["cuda"], ["tensorrt:x=1"], "no --provider names"),
                               (["cuda"], ["a=1", "a=2"], "given twice")):
        with pytest.raises(BadInputError, match=said):
            cli_providers(names, texts)


def test_run_and_bench_take_provider_options(runner, lengths_file, tmp_path):
    np.save(tmp_path / "x.npy", _x())
    base = ["run", str(lengths_file), "--input", str(tmp_path / "x.npy"), "--json"]
    done = runner.invoke(cli, [*base, "--provider", "cpu", "--provider-option", "use_arena=1"])
    assert done.exit_code == 0, done.output + done.stderr
    assert json.loads(done.stdout)["providers"] == [CPU]
    bad = runner.invoke(cli, [*base, "--provider-option", "device_id=0"])  # --provider auto: for which one?
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: --provider-option 'device_id=0': name the provider")
    done = runner.invoke(cli, ["bench", str(lengths_file), "--repeats", "2", "--seq", "4", "--provider", "cpu",
                               "--provider-option", "use_arena=1", "--json"])
    assert done.exit_code == 0, done.output + done.stderr
    assert json.loads(done.stdout)["providers"] == [CPU]
    bad = runner.invoke(cli, ["bench", str(lengths_file), "--provider", "tensorrt", "--json"])
    assert bad.exit_code == 2 and "not available" in bad.stderr


# -- known-wrong combinations -----------------------------------------------------------------------


def test_the_openvino_entry_matches_lengths_with_symbolic_dims(lengths_file, tmp_path):
    """The table's one measured entry: sequence_lens + symbolic dims on OpenVINO; not a file without lengths or with
    fixed dims, and not on CPU."""
    def found(path, providers):
        s = ort.InferenceSession(str(path), providers=[CPU])
        infos = [prov_tensor(a) for a in s.get_inputs()]
        return [f.provider for f in known_wrong.findings(path, providers, infos, dict(s.get_modelmeta().custom_metadata_map))]

    assert found(lengths_file, [OV, CPU]) == [OV]
    assert found(lengths_file, [CPU]) == []
    plain = tmp_path / "no-lengths.onnx"
    onnx.save(rm.rnn_model(cell="gru", head="classify", lengths=False), str(plain))
    assert found(plain, [OV, CPU]) == []
    fixed = tmp_path / "fixed.onnx"
    onnx.save(rm.rnn_model(cell="gru", head="classify", lengths=True, fixed=(2, 6)), str(fixed))
    assert found(fixed, [OV, CPU]) == []


def prov_tensor(arg):
    from rnnedge.runtime.signature import tensor_info

    return tensor_info(arg)


@pytest.fixture
def cpu_known_wrong(monkeypatch):
    """The table's OpenVINO entry, as if it were about the CPU provider (the one here), to drive the runtime for real."""
    entry = known_wrong.KNOWN_WRONG[0]
    monkeypatch.setattr(known_wrong, "KNOWN_WRONG", (known_wrong.KnownWrong(CPU, entry.needs, entry.reason, entry.way_out),))


def test_session_warns_and_refuses_the_calls_that_would_be_wrong(lengths_file, cpu_known_wrong, caplog):
    with caplog.at_level(logging.WARNING, logger="rnnedge"):
        session = Session(lengths_file, providers="cpu")
    assert any("ignores the sequence_lens" in r.getMessage() for r in caplog.records)
    x = _x()
    assert session.run(x).shape == (2, 3)  # full lengths: right on that provider
    assert session.run(x, lengths=np.array([6, 6])).shape == (2, 3)
    with pytest.raises(BadInputError, match=r"rows shorter than the sequence \(lengths 3 < 6\) refused: .*ignores the "
                                            r"sequence_lens.*--lowering scan"):
        session.run(x, lengths=np.array([6, 3]))
    with pytest.raises(BadInputError, match="rows shorter than the sequence"):
        session.run([x[0], x[1, :4]])  # a list of sequences of different lengths is padded: refused too


def test_unguardable_known_wrong_is_refused_at_open(tmp_path, cpu_known_wrong):
    """sequence_lens that does not come from a `lengths` input: the runtime cannot tell good calls from bad ones."""
    model = rm.rnn_model(cell="gru", head="classify", lengths=True)
    model.graph.input[1].name = "seq_len"
    for node in model.graph.node:
        node.input[:] = ["seq_len" if n == "lengths" else n for n in node.input]
    path = tmp_path / "renamed.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BadInputError, match="^refused: .*renamed.onnx on CPUExecutionProvider: .*ignores the sequence_lens"):
        Session(path, providers="cpu")


# -- verify says what it checked --------------------------------------------------------------------


def test_verify_reports_its_providers_and_known_wrong_notes(runner, seed_checkpoint, seed_onnx, cpu_known_wrong):
    done = runner.invoke(cli, ["verify", str(seed_checkpoint[0]), str(seed_onnx), "--provider", "cpu",
                               "--provider-option", "use_arena=1", "--json"])
    report = json.loads(done.stdout)
    assert report["providers"] == [CPU]
    assert any(n.startswith("known wrong: ") and "CPUExecutionProvider" in n for n in report["notes"])
    done = runner.invoke(cli, ["verify", str(seed_checkpoint[0]), str(seed_onnx), "--provider", "cpu"])
    assert "on CPUExecutionProvider" in done.stdout
