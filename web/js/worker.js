// Web Worker: runs the models and the decoder off the page's thread.
// In:  {type: "transcribe", id, audio: Float32Array (mono, model rate), instruments: null | 1..8}
// Out: {type: "progress", id, done, total} ... then {type: "result", id, result} or {type: "error", id, message}

import * as ort from "../vendor/ort.wasm.min.mjs";
import { loadConfig } from "./config.js";
import { openModel } from "./inference.js";
import { transcribeAudio } from "./pipeline.js";

const MODELS_URL = new URL("../models/", import.meta.url).href;
const VENDOR_URL = new URL("../vendor/", import.meta.url).href;

ort.env.wasm.wasmPaths = VENDOR_URL;
// Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
ort.env.wasm.proxy = false;

let configPromise = null;
const models = new Map();

function config() {
  configPromise ??= loadConfig(MODELS_URL);
  return configPromise;
}

function modelFor(card) {
  if (!models.has(card.network)) {
    models.set(card.network, openModel(ort, card, { executionProviders: ["wasm"], graphOptimizationLevel: "all" }));
  }
  return models.get(card.network);
}

self.onmessage = async (event) => {
  const { type, id } = event.data;
  if (type === "config") {
    try {
      const loaded = await config();
      self.postMessage({ type: "config", id, config: loaded, threads: ort.env.wasm.numThreads });
    } catch (err) {
      self.postMessage({ type: "error", id, message: String(err.message || err) });
    }
    return;
  }
  if (type !== "transcribe") return;
  try {
    const started = performance.now();
    const loaded = await config();
    const result = await transcribeAudio(ort, loaded, modelFor, event.data.audio, event.data.instruments, (done, total) =>
      self.postMessage({ type: "progress", id, done, total }),
    );
    result.seconds = (performance.now() - started) / 1000;
    result.threads = ort.env.wasm.numThreads;
    delete result.maps; // the page draws the notes only
    self.postMessage({ type: "result", id, result });
  } catch (err) {
    self.postMessage({ type: "error", id, message: String(err?.message || err) });
  }
};
