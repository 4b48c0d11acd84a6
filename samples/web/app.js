// rnnedge web sample: draw a digit on an 8x8 grid; an exported rnnedge model reads it row by row
// (8 time steps of 8 features, pixel/16 in [0, 1]) with onnxruntime-web's WebAssembly backend.
//
// URL parameters:
//   model=URL     the ONNX file (default model.onnx, next to this page)
//   example=N     start with example digit N drawn (from examples.json)
//   test=1        test hook: run the model on test_inputs.json (or inputs=URL), write the outputs as
//                 JSON into <pre id="result"> and set document.title = "done" (errors go there too)
"use strict";

const params = new URLSearchParams(location.search);
const MODEL_URL = params.get("model") || "model.onnx";
const INPUTS_URL = params.get("inputs") || "test_inputs.json";

// Single-threaded wasm: no SharedArrayBuffer, so no cross-origin isolation headers are needed.
ort.env.wasm.wasmPaths = new URL("node_modules/onnxruntime-web/dist/", location.href).href;
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = "warning";

const SIDE = 8;           // the model sees SIDE steps of SIDE features
const FINE = 4;           // each cell is FINE x FINE pen pixels: the UCI digits count 4x4 blocks of a 32x32 bitmap
const BRUSH = 1.6;        // pen radius in pen pixels

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// ONNX metadata_props without a protobuf library: walk ModelProto's top-level fields and read
// field 14 (repeated StringStringEntryProto {1: key, 2: value}); skip everything else.

function readMetadata(bytes) {
  const utf8 = new TextDecoder();
  let pos = 0;
  const varint = () => {
    let value = 0, scale = 1, byte;
    do {
      if (pos >= bytes.length) throw new Error("truncated ONNX file");
      byte = bytes[pos++];
      value += (byte & 0x7f) * scale;  // no bit shifts: lengths may pass 2^31
      scale *= 128;
    } while (byte & 0x80);
    return value;
  };
  const skip = (wire) => {
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 2) { const n = varint(); pos += n; }  // not `pos += varint()`: that adds to the old pos
    else if (wire === 5) pos += 4;
    else throw new Error(`not an ONNX model (protobuf wire type ${wire} at byte ${pos})`);
  };
  const meta = {};
  while (pos < bytes.length) {
    const tag = varint(), field = Math.floor(tag / 8), wire = tag % 8;
    if (field !== 14 || wire !== 2) { skip(wire); continue; }
    const size = varint();
    const end = pos + size;
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
  if (pos !== bytes.length) throw new Error("truncated ONNX file");
  return meta;
}

function parseJSON(text, fallback) {
  try { return text === undefined ? fallback : JSON.parse(text); } catch { return fallback; }
}

// ---------------------------------------------------------------------------------------------
// The model

async function loadModel(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}. Export one first: ` +
                    "rnnedge export digits.safetensors -o samples/web/model.onnx");
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  const metadata = readMetadata(bytes);
  const config = parseJSON(metadata["rnnedge.config"], {});
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ["wasm"],
    graphOptimizationLevel: "all",
  });
  const classes = config.num_outputs || 10;
  let labels = parseJSON(metadata["rnnedge.labels"], null);
  if (!Array.isArray(labels) || labels.length !== classes) {
    labels = Array.from({ length: classes }, (_, i) => String(i));
  }
  const input = session.inputNames.includes("x") ? "x" : session.inputNames[0];
  const output = session.outputNames.includes("logits") ? "logits" : session.outputNames[0];
  return { session, metadata, config, labels, input, output };
}

function toTensor(spec) {
  // {type, dims, data}: data flat, row-major, as written by tests/test_web.py
  const type = spec.type || "float32";
  const data = type === "int64" ? BigInt64Array.from(spec.data, (v) => BigInt(v))
             : type === "int32" ? Int32Array.from(spec.data)
             : Float32Array.from(spec.data);
  return new ort.Tensor(type, data, spec.dims);
}

function fromTensor(tensor) {
  const data = tensor.type === "int64" ? Array.from(tensor.data, Number) : Array.from(tensor.data);
  return { type: tensor.type, dims: Array.from(tensor.dims), data };
}

// One image (SIDE*SIDE values in [0, 1]) -> class probabilities.
async function classify(model, pixels) {
  const feeds = { [model.input]: new ort.Tensor("float32", Float32Array.from(pixels), [1, SIDE, SIDE]) };
  const names = model.session.inputNames;
  if (names.includes("lengths")) feeds.lengths = new ort.Tensor("int64", BigInt64Array.of(BigInt(SIDE)), [1]);
  for (const state of ["h0", "c0"]) {  // a streaming export: start from zeros
    if (!names.includes(state)) continue;
    const c = model.config, rows = (c.layers || 1) * (c.bidirectional ? 2 : 1);
    feeds[state] = new ort.Tensor("float32", new Float32Array(rows * c.hidden), [rows, 1, c.hidden]);
  }
  const results = await model.session.run(feeds, [model.output]);
  const logits = Array.from(results[model.output].data);
  const top = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

// ---------------------------------------------------------------------------------------------
// The drawing: a (SIDE*FINE)^2 pen bitmap, counted per cell as in the UCI digits, plus a base image
// (an example digit); cell value = min(1, base + inked pen pixels / FINE^2).

const N = SIDE * FINE;
const pen = new Uint8Array(N * N);
const base = new Float32Array(SIDE * SIDE);

function pixels() {
  const out = new Float32Array(SIDE * SIDE);
  for (let r = 0; r < SIDE; r++) {
    for (let c = 0; c < SIDE; c++) {
      let count = 0;
      for (let y = r * FINE; y < (r + 1) * FINE; y++) {
        for (let x = c * FINE; x < (c + 1) * FINE; x++) count += pen[y * N + x];
      }
      out[r * SIDE + c] = Math.min(1, base[r * SIDE + c] + count / (FINE * FINE));
    }
  }
  return out;
}

function dab(fx, fy, erase) {  // fx, fy in pen pixels
  for (let y = Math.floor(fy - BRUSH); y <= Math.ceil(fy + BRUSH); y++) {
    for (let x = Math.floor(fx - BRUSH); x <= Math.ceil(fx + BRUSH); x++) {
      if (x < 0 || y < 0 || x >= N || y >= N) continue;
      if ((x + 0.5 - fx) ** 2 + (y + 0.5 - fy) ** 2 > BRUSH * BRUSH) continue;
      pen[y * N + x] = erase ? 0 : 1;
      if (erase) base[Math.floor(y / FINE) * SIDE + Math.floor(x / FINE)] = 0;
    }
  }
}

function render(canvas) {
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / SIDE;
  const values = pixels();
  for (let i = 0; i < SIDE * SIDE; i++) {
    const shade = Math.round(255 * (1 - values[i]));
    ctx.fillStyle = `rgb(${shade}, ${shade}, ${Math.min(255, shade + 12)})`;
    ctx.fillRect((i % SIDE) * cell, Math.floor(i / SIDE) * cell, cell, cell);
  }
  ctx.strokeStyle = "rgba(120, 130, 150, 0.35)";
  ctx.lineWidth = 1;
  for (let k = 1; k < SIDE; k++) {
    ctx.beginPath(); ctx.moveTo(k * cell + 0.5, 0); ctx.lineTo(k * cell + 0.5, canvas.height); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, k * cell + 0.5); ctx.lineTo(canvas.width, k * cell + 0.5); ctx.stroke();
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// The interactive page

function showProbabilities(labels, probs) {
  const list = $("probs");
  list.replaceChildren();
  const best = probs ? probs.indexOf(Math.max(...probs)) : -1;
  labels.forEach((label, i) => {
    const p = probs ? probs[i] : 0;
    const item = document.createElement("li");
    if (i === best) item.className = "best";
    item.innerHTML = '<span class="label"></span><span class="bar"><span></span></span><span class="pct"></span>';
    item.querySelector(".label").textContent = label;
    item.querySelector(".bar span").style.width = `${(100 * p).toFixed(1)}%`;
    item.querySelector(".pct").textContent = probs ? `${(100 * p).toFixed(1)}%` : "";
    list.append(item);
  });
  $("guess").textContent = probs ? labels[best] : "?";
  $("confidence").textContent = probs ? `${(100 * probs[best]).toFixed(0)}% sure` : "draw a digit";
}

function describe(model) {
  const c = model.config, m = model.metadata;
  const what = c.cell ? `${c.bidirectional ? "bidirectional " : ""}${c.cell.toUpperCase()}, hidden ${c.hidden}` +
                        `${c.layers > 1 ? `, ${c.layers} layers` : ""}` : "model";
  const how = m["rnnedge.lowering"] ? `, ${m["rnnedge.lowering"]} lowering` : "";
  return `${m["rnnedge.task"] || "rnnedge"} ${what}${how}; onnxruntime-web ${ort.env.versions.web}, wasm, 1 thread`;
}

async function runPage() {
  const canvas = $("grid");
  showProbabilities(Array.from({ length: 10 }, (_, i) => String(i)), null);
  render(canvas);

  let model = null, busy = false, dirty = false, lastMs = 0;
  const update = async () => {
    const values = render(canvas);
    if (!model) return;
    if (busy) { dirty = true; return; }
    busy = true;
    try {
      if (values.every((v) => v === 0)) showProbabilities(model.labels, null);
      else {
        const t0 = performance.now();
        showProbabilities(model.labels, await classify(model, values));
        lastMs = performance.now() - t0;
      }
      $("status").textContent = `${describe(model)}; ${lastMs.toFixed(1)} ms per guess`;
    } catch (e) {
      $("status").textContent = `Inference failed: ${e.message || e}`;
    } finally {
      busy = false;
      if (dirty) { dirty = false; requestAnimationFrame(update); }
    }
  };

  // Drawing with mouse, pen or finger.
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) / box.width * N, (event.clientY - box.top) / box.height * N];
  };
  const stroke = (event) => {
    const [x, y] = at(event);
    const erase = $("erase").checked || event.buttons === 2;
    const [x0, y0] = last || [x, y];
    const steps = Math.max(1, Math.ceil(Math.hypot(x - x0, y - y0) / 0.5));
    for (let s = 1; s <= steps; s++) dab(x0 + (x - x0) * s / steps, y0 + (y - y0) * s / steps, erase);
    last = [x, y];
    update();
  };
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = null; stroke(e); });
  canvas.addEventListener("pointermove", (e) => { if (e.buttons) stroke(e); });
  canvas.addEventListener("pointerup", () => { last = null; });
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  $("clear").addEventListener("click", () => { pen.fill(0); base.fill(0); update(); });

  // Example digits from the test split.
  let examples = [];
  try {
    examples = (await (await fetch("examples.json")).json()).examples;
  } catch { /* optional */ }
  const loadExample = (k) => {
    pen.fill(0);
    examples[k].pixels.forEach((v, i) => { base[i] = v / 16; });
    update();
  };
  examples.forEach((example, k) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = example.label;
    button.title = `test digit #${example.test_index}`;
    button.addEventListener("click", () => loadExample(k));
    $("examples").append(button);
  });
  if (examples.length) $("examples").prepend("Examples: ");

  try {
    model = await loadModel(MODEL_URL);
    const c = model.config;
    if (c.input_kind && (c.input_kind !== "features" || c.input_size !== SIDE || c.head !== "classify")) {
      throw new Error(`this page needs a classifier over ${SIDE} features per step (the digits task); ` +
                      `${MODEL_URL} has ${c.input_kind} input of size ${c.input_size}, head ${c.head}`);
    }
    $("status").textContent = describe(model);
    showProbabilities(model.labels, null);
    const k = Number(params.get("example"));
    if (params.has("example") && examples[k]) loadExample(k);
    else update();
  } catch (e) {
    model = null;
    $("status").textContent = `Could not load the model: ${e.message || e}`;
    $("status").classList.add("error");
  }
}

// ---------------------------------------------------------------------------------------------
// The test hook: fixed inputs in, outputs out as JSON (tests/test_web.py compares them with
// onnxruntime-python's).

async function runTest() {
  const report = {};
  try {
    const model = await loadModel(MODEL_URL);
    const response = await fetch(INPUTS_URL);
    if (!response.ok) throw new Error(`${INPUTS_URL}: HTTP ${response.status}`);
    const spec = await response.json();
    const feeds = {};
    for (const [name, tensor] of Object.entries(spec.feeds)) feeds[name] = toTensor(tensor);
    const t0 = performance.now();
    const results = await model.session.run(feeds);
    report.ms = performance.now() - t0;
    report.outputs = {};
    for (const [name, tensor] of Object.entries(results)) report.outputs[name] = fromTensor(tensor);
    Object.assign(report, {
      labels: model.labels,
      metadata: model.metadata,
      inputNames: model.session.inputNames,
      outputNames: model.session.outputNames,
      ort: ort.env.versions,
      numThreads: ort.env.wasm.numThreads,
    });
  } catch (e) {
    report.error = String((e && e.stack) || e);
  }
  const pre = $("result");
  pre.textContent = JSON.stringify(report);
  pre.hidden = false;
  $("status").textContent = report.error ? `Test failed: ${report.error}` : "Test done.";
  document.title = "done";
}

if (params.get("test")) runTest(); else runPage();
