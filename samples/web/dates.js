// rnnedge web sample, page 2: normalise a human-written date with an exported seq2seq folder
// (encoder.onnx + decoder.onnx, `rnnedge export d.safetensors -o samples/web/dates`) in onnxruntime-web.
//
// The search is rnnedge.runtime.seq2seq's, line for line: rows stop at EOS, beam search keeps finished
// hypotheses in the beam at their summed log-probability (float64, no length penalty), ties go to
// the lower index. So the page writes what Seq2SeqSession.generate writes in Python.
//
// URL parameters:
//   dir=URL      the folder holding encoder.onnx and decoder.onnx (default dates/)
//   test=1       test hook: decode the strings of strings.json (or inputs=URL) greedy and with beam 3,
//                write {"greedy": [...], "beam3": [...], ...} as JSON into <pre id="result"> and set
//                document.title = "done" (errors: {"error": "..."})
"use strict";

const params = new URLSearchParams(location.search);
const DIR = (params.get("dir") || "dates/").replace(/\/?$/, "/");
const INPUTS_URL = params.get("inputs") || "strings.json";

ort.env.wasm.wasmPaths = new URL("node_modules/onnxruntime-web/dist/", location.href).href;
ort.env.wasm.numThreads = 1;  // no SharedArrayBuffer: no cross-origin isolation headers needed
ort.env.wasm.proxy = false;
ort.env.logLevel = "warning";

const $ = (id) => document.getElementById(id);
const EXAMPLES = ["5 May 2001", "wednesday, september 30, 2099", "12/31/1999", "Sat 05 May 2001", "07.06.2032"];

// ONNX metadata_props without a protobuf library: ModelProto field 14 = repeated {1: key, 2: value}.
function readMetadata(bytes) {
  const utf8 = new TextDecoder();
  let pos = 0;
  const varint = () => {
    let value = 0, scale = 1, byte;
    do {
      if (pos >= bytes.length) throw new Error("truncated ONNX file");
      byte = bytes[pos++];
      value += (byte & 0x7f) * scale;
      scale *= 128;
    } while (byte & 0x80);
    return value;
  };
  const skip = (wire) => {
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 2) { const n = varint(); pos += n; }
    else if (wire === 5) pos += 4;
    else throw new Error(`not an ONNX model (protobuf wire type ${wire} at byte ${pos})`);
  };
  const meta = {};
  while (pos < bytes.length) {
    const tag = varint(), field = Math.floor(tag / 8), wire = tag % 8;
    if (field !== 14 || wire !== 2) { skip(wire); continue; }
    const end = varint() + pos;
    let key = "", value = "";
    while (pos < end) {
      const t = varint(), f = Math.floor(t / 8), w = t % 8;
      if ((f === 1 || f === 2) && w === 2) {
        const n = varint();
        const s = utf8.decode(bytes.subarray(pos, pos + n));
        pos += n;
        if (f === 1) key = s; else value = s;
      } else skip(w);
    }
    pos = end;
    meta[key] = value;
  }
  return meta;
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}. Export a dates model first: ` +
                    "rnnedge train --task dates -o d.safetensors && rnnedge export d.safetensors -o samples/web/dates");
  }
  return new Uint8Array(await response.arrayBuffer());
}

async function loadFolder(dir) {
  const [encBytes, decBytes] = await Promise.all([fetchBytes(dir + "encoder.onnx"), fetchBytes(dir + "decoder.onnx")]);
  const metadata = readMetadata(encBytes);
  const meta = JSON.parse(metadata["rnnedge.seq2seq"] || "null");
  if (!meta) throw new Error(`${dir}encoder.onnx: no rnnedge.seq2seq metadata (not an rnnedge seq2seq export)`);
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const [encoder, decoder] = await Promise.all([ort.InferenceSession.create(encBytes, options),
                                                ort.InferenceSession.create(decBytes, options)]);
  const index = new Map(meta.vocab.map((tok, i) => [tok, i]).filter(([tok]) => tok.length === 1));
  return { encoder, decoder, meta, metadata, index };
}

// Strings -> tokens [B, T] (padded) and lengths [B]; the same refusals as rnnedge.runtime.seq2seq.Codec.
function encode(model, strings) {
  const rows = strings.map((raw, i) => {
    const s = raw.trim();
    if (!s) throw new Error(`string ${i} is empty`);
    if (s.length > model.meta.max_source_len) throw new Error(`string ${i} has ${s.length} characters; the model takes at most ${model.meta.max_source_len}`);
    return Array.from(s, (ch, p) => {
      if (!model.index.has(ch)) throw new Error(`character ${JSON.stringify(ch)} at position ${p} is not in the model's vocabulary`);
      return model.index.get(ch);
    });
  });
  const T = Math.max(1, ...rows.map((r) => r.length));
  const tokens = new BigInt64Array(rows.length * T).fill(BigInt(model.meta.pad));
  rows.forEach((r, i) => r.forEach((id, t) => { tokens[i * T + t] = BigInt(id); }));
  return { tokens, lengths: BigInt64Array.from(rows, (r) => BigInt(r.length)), B: rows.length, T };
}

function logSoftmax(logits, offset, V) {
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, logits[offset + v]);
  let sum = 0;
  for (let v = 0; v < V; v++) sum += Math.exp(logits[offset + v] - max);
  const out = new Float64Array(V), log = Math.log(sum);
  for (let v = 0; v < V; v++) out[v] = logits[offset + v] - max - log;
  return out;
}

// rnnedge.runtime.seq2seq.beam_search, over onnxruntime-web. Returns B id lists (cut at EOS) and the
// attention rows of the best hypothesis when `keepAttention`.
async function beamSearch(model, enc, B, T, beam, maxLen) {
  const { bos, eos } = model.meta;
  const memory = enc.memory.data, mask = enc.memory_mask.data, state0 = enc.state.data;
  const M = enc.memory.dims[2], S = enc.state.dims[1], k = beam, N = B * k;
  let state = new Float32Array(N * S);
  for (let n = 0; n < N; n++) state.set(state0.subarray(Math.floor(n / k) * S, Math.floor(n / k) * S + S), n * S);
  let scores = new Float64Array(N).fill(-Infinity);
  let finished = new Uint8Array(N).fill(1);
  for (let b = 0; b < B; b++) { scores[b * k] = 0; finished[b * k] = 0; }
  let tokens = Array.from({ length: N }, () => []);
  let attention = Array.from({ length: N }, () => []);
  let prev = new Array(N).fill(bos);
  for (let step = 0; step < maxLen; step++) {
    const idx = [];
    for (let n = 0; n < N; n++) if (!finished[n]) idx.push(n);
    if (!idx.length) break;
    const A = idx.length;
    const fMem = new Float32Array(A * T * M), fMask = new Uint8Array(A * T), fState = new Float32Array(A * S);
    idx.forEach((n, a) => {
      const src = Math.floor(n / k);
      fMem.set(memory.subarray(src * T * M, (src + 1) * T * M), a * T * M);
      fMask.set(mask.subarray(src * T, (src + 1) * T), a * T);
      fState.set(state.subarray(n * S, n * S + S), a * S);
    });
    const out = await model.decoder.run({
      prev: new ort.Tensor("int64", BigInt64Array.from(idx, (n) => BigInt(prev[n])), [A]),
      state: new ort.Tensor("float32", fState, [A, S]),
      memory: new ort.Tensor("float32", fMem, [A, T, M]),
      memory_mask: new ort.Tensor("bool", fMask, [A, T]),
    });
    const V = out.logits.dims[1];
    const cand = new Float64Array(N * V).fill(-Infinity);
    const full = Float32Array.from(state), attn = new Map();
    idx.forEach((n, a) => {
      const logp = logSoftmax(out.logits.data, a * V, V);
      for (let v = 0; v < V; v++) cand[n * V + v] = scores[n] + logp[v];
      full.set(out.new_state.data.subarray(a * S, a * S + S), n * S);
      attn.set(n, Array.from(out.attention.data.subarray(a * T, (a + 1) * T)));
    });
    for (let n = 0; n < N; n++) if (finished[n]) cand[n * V + eos] = scores[n];
    const nScores = new Float64Array(N), nFinished = new Uint8Array(N), nState = new Float32Array(N * S);
    const nTokens = [], nAttention = [], nPrev = [];
    for (let b = 0; b < B; b++) {
      const base = b * k * V;
      const order = Array.from({ length: k * V }, (_, j) => j);
      order.sort((x, y) => (cand[base + x] !== cand[base + y] ? (cand[base + x] > cand[base + y] ? -1 : 1) : x - y));
      for (let j = 0; j < k; j++) {
        const pick = order[j], n = b * k + j, parent = b * k + Math.floor(pick / V), token = pick % V;
        nScores[n] = cand[base + pick];
        nState.set(full.subarray(parent * S, parent * S + S), n * S);
        nFinished[n] = finished[parent] || token === eos || !Number.isFinite(nScores[n]) ? 1 : 0;
        nTokens[n] = tokens[parent].concat([token]);
        nAttention[n] = attention[parent].concat(attn.has(parent) ? [attn.get(parent)] : []);
        nPrev[n] = token;
      }
    }
    scores = nScores; finished = nFinished; state = nState; tokens = nTokens; attention = nAttention; prev = nPrev;
  }
  const ids = [], attentions = [];
  for (let b = 0; b < B; b++) {
    let pick = 0;
    for (let j = 0; j < k; j++) if (finished[b * k + j]) { pick = j; break; }
    const row = tokens[b * k + pick], cut = row.indexOf(eos);
    ids.push(cut >= 0 ? row.slice(0, cut) : row);
    attentions.push(attention[b * k + pick]);
  }
  return { ids, attentions };
}

function decode(model, ids) {
  return ids.map((row) => row.map((i) => model.meta.vocab[i]).filter((t) => t.length === 1).join(""));
}

async function generate(model, strings, beam = 1, maxLen = null) {
  const { tokens, lengths, B, T } = encode(model, strings);
  const enc = await model.encoder.run({
    tokens: new ort.Tensor("int64", tokens, [B, T]),
    lengths: new ort.Tensor("int64", lengths, [B]),
  });
  const { ids, attentions } = await beamSearch(model, enc, B, T, beam, maxLen || model.meta.max_target_len);
  return { strings: decode(model, ids), ids, attentions };
}

// ---------------------------------------------------------------------------------------------
// The page

function showAttention(source, output, rows) {
  const table = document.createElement("table");
  const head = table.insertRow();
  head.insertCell();
  for (const ch of source) head.insertCell().textContent = ch;
  rows.forEach((row, i) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = output[i] || "⏎";
    row.slice(0, source.length).forEach((w) => {
      tr.insertCell().style.background = `rgba(25, 118, 210, ${Math.min(1, w).toFixed(3)})`;
    });
  });
  $("attention").replaceChildren(table);
}

async function runPage() {
  let model;
  try {
    model = await loadFolder(DIR);
  } catch (error) {
    $("status").textContent = `Could not load the model: ${error.message}`;
    return;
  }
  const config = JSON.parse(model.metadata["rnnedge.config"] || "{}");
  const describe = `dates ${config.cell || ""} decoder, ${config.attention || ""} attention, hidden ${config.hidden || "?"}`;
  let pending = Promise.resolve();
  const update = () => {
    pending = pending.then(async () => {
      const text = $("date").value, beam = Number($("beam").value);
      $("iso").classList.remove("error");
      if (!text.trim()) { $("iso").innerHTML = "&nbsp;"; $("attention").replaceChildren(); return; }
      try {
        const start = performance.now();
        const out = await generate(model, [text], beam);
        $("iso").textContent = out.strings[0] || "(nothing)";
        showAttention(text.trim(), out.strings[0], out.attentions[0]);
        $("status").textContent = `${describe}: ${(performance.now() - start).toFixed(1)} ms (${beam === 1 ? "greedy" : `beam ${beam}`})`;
      } catch (error) {
        $("iso").textContent = error.message;
        $("iso").classList.add("error");
        $("attention").replaceChildren();
      }
    });
  };
  for (const example of EXAMPLES) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = example;
    button.addEventListener("click", () => { $("date").value = example; update(); });
    $("examples").append(button);
  }
  $("date").addEventListener("input", update);
  $("beam").addEventListener("change", update);
  $("status").textContent = describe;
  update();
}

async function runTest() {
  const report = {};
  try {
    const model = await loadFolder(DIR);
    const { strings } = await (await fetch(INPUTS_URL)).json();
    const greedy = await generate(model, strings, 1);
    const beam3 = await generate(model, strings, 3);
    Object.assign(report, { greedy: greedy.strings, beam3: beam3.strings, greedyIds: greedy.ids, beam3Ids: beam3.ids,
                            meta: model.meta, ort: { web: ort.env.versions && ort.env.versions.web }, numThreads: ort.env.wasm.numThreads });
    try { encode(model, ["5 May 2001", "5 May 2001 ✓"]); } catch (error) { report.refusal = error.message; }
  } catch (error) {
    report.error = String(error && error.message || error);
  }
  const pre = $("result");
  pre.textContent = JSON.stringify(report);
  pre.hidden = false;
  document.title = "done";
}

if (params.get("test")) runTest(); else runPage();
