"""The web sample's dates page (samples/web/dates.html) decodes an exported seq2seq folder in headless Chromium with
onnxruntime-web and writes what onnxruntime-python's Seq2SeqSession writes: the same ids, token for token, greedy
and with beam 3; the page normalises what a person types. Reuses tests/test_web.py's server and Chromium driver;
skipped (failed under CI=true) like it when chromium or samples/web/node_modules is missing."""

from __future__ import annotations

import json

import pytest
import test_web as web

browser, server, _needs_browser = web.browser, web.server, web._needs_browser  # the fixtures of tests/test_web.py
pytestmark = [pytest.mark.skipif(bool(web.MISSING) and not web.IN_CI, reason="; ".join(web.MISSING))]

STRINGS = ["5 May 2001", "wednesday, september 30, 2099", "12/31/1999", "2031/02/21", "Mon 30 Mar 2082", "07.06.2032",
           "march 16, 1991", "Dec 01, 1900", "  1 jan 2000 ", "Saturday, May 5, 2001", "31.12.2099"]


@pytest.fixture(scope="module")
def dates_folder(server):
    """A tiny dates model (GRU/Luong, hidden 16, one epoch on 512 strings) exported into the served /_test/ folder."""
    from rnnedge.families.seq2seq.dates import DatesTask
    from rnnedge.families.seq2seq.export import export_seq2seq
    from rnnedge.training.loop import train

    class TinyDates(DatesTask):
        sizes = {"train": 512, "val": 32, "test": 32}

    _, test_dir = server
    task = TinyDates()
    result = train(task.default_config("gru", hidden=16), task, epochs=1, progress=False)
    export_seq2seq(result.model, test_dir, verify=False)  # encoder.onnx, decoder.onnx at /_test/
    (test_dir / "strings.json").write_text(json.dumps({"strings": STRINGS}))
    return test_dir


def test_browser_decodes_like_onnxruntime_python(dates_folder, server, browser):
    from rnnedge.runtime import Seq2SeqSession

    base, _ = server
    session = browser.open(f"{base}dates.html?test=1&dir=_test/&inputs=_test/strings.json")
    browser.wait_for(session, "document.title === 'done'")
    report = json.loads(browser.evaluate(session, "document.getElementById('result').textContent"))
    assert "error" not in report, f"{report['error']}\nconsole: {browser.console[-10:]}"
    python = Seq2SeqSession(dates_folder)
    assert report["greedyIds"] == python.generate_ids(STRINGS, beam=1)
    assert report["beam3Ids"] == python.generate_ids(STRINGS, beam=3)
    assert report["greedy"] == python.generate(STRINGS) and report["beam3"] == python.generate(STRINGS, beam=3)
    assert report["meta"] == python.meta and report["numThreads"] == 1
    assert "'✓'" not in report["refusal"] and "not in the model's vocabulary" in report["refusal"]


def test_page_normalises_what_a_person_types(dates_folder, server, browser):
    from rnnedge.runtime import Seq2SeqSession

    base, _ = server
    session = browser.open(f"{base}dates.html?dir=_test/")
    status = browser.wait_for(session, "(t => /ms|Could not/.test(t) && t)(document.getElementById('status').textContent)")
    assert "Could not" not in status, f"{status}\nconsole: {browser.console[-10:]}"
    python = Seq2SeqSession(dates_folder)
    for text in ("12/31/1999", "sat 05 may 2001"):
        browser.evaluate(session, f"(e => {{ e.value = {json.dumps(text)}; e.dispatchEvent(new Event('input')); }})"
                                  "(document.getElementById('date'))")
        want = python.generate([text], beam=3)[0] or "(nothing)"
        shown = browser.wait_for(session, f"(t => t === {json.dumps(want)} && t)(document.getElementById('iso').textContent)",
                                 timeout=30)
        assert shown == want
    browser.evaluate(session, "(e => { e.value = '5 May 2001 ✓'; e.dispatchEvent(new Event('input')); })(document.getElementById('date'))")
    error = browser.wait_for(session, "(e => e.classList.contains('error') && e.textContent)(document.getElementById('iso'))", timeout=30)
    assert "not in the model's vocabulary" in error
