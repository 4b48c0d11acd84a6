"""Execution providers with their options, as onnxruntime takes them (standard library only).

    providers=[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]   # onnxruntime's own form
    providers=[("cuda", {"device_id": 0}), "cpu"]                                     # rnnedge's short names too
    providers=("openvino", {"device_type": "CPU"})                                     # one provider with options

Every rnnedge entry point that opens an onnxruntime session (``open_session``, ``Session``,
``StreamingSession``, ``Seq2SeqSession``, ``verify``, ``bench``, ``run``) takes this form. Option
values are turned into strings as onnxruntime does (``str(value)``); which keys a provider knows is
onnxruntime's business: a key it rejects is a one-line ``BadInputError`` (``option_error``), a key it
takes without a word but does not report back is logged (``unreported_options``), and a provider it drops at start
(a bad option value, a missing device) is a logged fallback (``dropped_providers``).

On the command line: ``--provider NAME --provider-option KEY=VALUE`` (repeatable); with several
``--provider`` (verify), ``--provider-option NAME:KEY=VALUE`` says which one an option is for.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from rnnedge.errors import BadInputError

__all__ = ["Entry", "split_entry", "is_single_entry", "parse_option_texts", "cli_providers", "option_error",
           "unreported_options", "dropped_providers"]

log = logging.getLogger(__name__)

Entry = tuple  # (provider name, {option: value as str})


def is_single_entry(value) -> bool:
    """``("cuda", {"device_id": 0})``: one provider with its options (not a list of two names)."""
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], Mapping)


def split_entry(item) -> tuple[str, dict[str, str]]:
    """``"cuda"`` -> ("cuda", {}); ``("cuda", {"device_id": 0})`` -> ("cuda", {"device_id": "0"})."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping):
        return item[0], {str(k): str(v) for k, v in item[1].items()}
    raise BadInputError(f"a provider is a name or a (name, {{option: value}}) pair as onnxruntime takes them, got {item!r}")


def parse_option_texts(texts: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["device_id=0", "cuda:precision=FP16"]`` -> {provider name as given: {key: value}}.

    ``KEY=VALUE`` goes to the one provider named (``names`` must hold exactly one, not 'auto');
    ``NAME:KEY=VALUE`` goes to provider ``NAME`` (one of ``names``, short or full, any case)."""
    out: dict[str, dict[str, str]] = {}
    lowered = {n.lower(): n for n in names}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise BadInputError(f"--provider-option {text!r}: expected KEY=VALUE (or PROVIDER:KEY=VALUE)")
        target, colon, key = key.rpartition(":") if ":" in key else ("", "", key)
        if colon:
            if target.strip().lower() not in lowered:
                raise BadInputError(f"--provider-option {text!r} is for provider {target!r}, which no --provider names "
                                    f"({', '.join(names) or 'none'})")
            name = lowered[target.strip().lower()]
        elif len(names) == 1 and names[0].strip().lower() != "auto":
            name = names[0]
        else:
            raise BadInputError(f"--provider-option {text!r}: name the provider it is for, with --provider NAME "
                                + ("(one, not 'auto')" if len(names) <= 1 else f"or as PROVIDER:KEY=VALUE (providers: {', '.join(names)})"))
        options = out.setdefault(name, {})
        if key.strip() in options:
            raise BadInputError(f"--provider-option: {key.strip()!r} given twice for {name}")
        options[key.strip()] = value
    return out


def cli_providers(names: Sequence[str], option_texts: Sequence[str]) -> list:
    """The command line's ``--provider`` names and ``--provider-option`` texts -> the API's ``providers``: one name
    alone as a string (``"auto"`` when none was given), else a list of names and (name, options) pairs."""
    names = [n for n in names if n] or ["auto"]
    options = parse_option_texts(option_texts, names)
    if len(names) == 1 and not options:
        return names[0]  # one name ("auto" included), as the API takes it
    return [(n, options[n]) if n in options else n for n in names]


def option_error(entries: Sequence[tuple[str, dict]], err: Exception) -> BadInputError | None:
    """onnxruntime's refusal of a provider option (an unknown key, a bad value) as one line; None when ``err``
    is about something else (a provider that cannot start, a damaged file)."""
    text = " ".join(str(err).split())
    given = [(name, key) for name, opts in entries for key in opts]
    if not given:
        return None
    hit = next(((n, k) for n, k in given if k in text), None)
    if hit is None and "option" not in text.lower():
        return None
    said = text.split("] : ", 1)[-1]
    said = said[said.rfind(") ") + 2:] if ") " in said and said.count("onnxruntime::") else said  # drop C++ signatures
    name = hit[0] if hit else next(n for n, o in entries if o)
    shown = {k: v for n, o in entries if n == name for k, v in o.items()}
    return BadInputError(f"onnxruntime refused the options {shown} of {name}: {said.strip()[:300]}")


def unreported_options(entries: Sequence[tuple[str, dict]], reported: Mapping[str, Mapping[str, str]],
                       active: Sequence[str]) -> dict[str, list[str]]:
    """Options given to an active provider that onnxruntime neither rejected nor reports back in
    ``session.get_provider_options()``, where that says something: a provider that reports its options (CUDA,
    TensorRT) lists every one it took; the CPU provider takes none (its settings are session options, e.g.
    ``threads``). Providers that report nothing at all (OpenVINO) validate their options themselves."""
    out = {}
    for name, opts in entries:
        shown = reported.get(name) or {}
        if name in active and opts and (shown or name == "CPUExecutionProvider"):
            missing = [k for k in opts if k not in shown]
            if missing:
                out[name] = missing
    return out


def dropped_providers(wanted: Sequence[str], active: Sequence[str]) -> list[str]:
    """Providers asked for that the session does not use: onnxruntime dropped them at start (it logs why to
    stderr: a device that is not there, an option value it refuses) and runs on the rest."""
    return [p for p in wanted if p not in active]
