// The page's way to the service (besides <img> tags' signed rendition URLs, which need no key): fetch and
// XMLHttpRequest with the API key (if any) as X-API-Key, a 401 turned into one question for a key (shared by every
// request refused at the same time) and a retry, and a few long polls at a time so that waiting never takes every
// connection the browser allows to one host.

import { sleep } from "./dom.js";

const KEY_STORAGE = "apercu.apiKey";
const FINAL = new Set(["success", "failure"]);
const ID = /^[0-9a-f]{32}$/;
const LONG_POLLS = 3; // browsers open 6 connections per host: leave room for uploads, thumbnails and lists
const UPLOADS = 2;
export const RESUMABLE_ABOVE = 4 * 1024 * 1024; // bytes: a bigger file goes by tus (uploadResumable), resumable
const RESUMABLE_CHUNK = 2 * 1024 * 1024; // bytes per PATCH: what a cut connection costs at most
const RESUMABLE_RETRIES = [0, 1000, 2000, 3000, ...Array(40).fill(5000)]; // ms: about 3.5 minutes offline

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const isId = (value) => ID.test(value);

// The API's root: empty at a host's root, or the prefix a reverse proxy serves it under (`/images`), which the
// page's own <meta name="apercu-root"> says. Paths the page makes go through `at`; the links in the API's JSON
// (`links`, `views`) carry the prefix already.
const ROOT = document.querySelector('meta[name="apercu-root"]')?.content || "";
export const at = (path) => `${ROOT}${path}`;
export const isFinal = (status) => FINAL.has(status);

// --- the API key ---------------------------------------------------------------------------------------------

let askForKey = async () => null;
let asking = null;

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled: the page still works without keys
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // not kept across visits, nothing else to do
  }
  document.dispatchEvent(new CustomEvent("apercu:key", { detail: { key } }));
}

/** The UI registers how to ask: `ask(refused)` resolves to a key, or null when the person declines. */
export function onKeyNeeded(ask) {
  askForKey = ask;
}

/** After a 401 sent with `usedKey`: true once there is a new key to retry with, false if none is coming. */
async function keyRefused(usedKey) {
  if (apiKey() !== usedKey) return true; // another request got a new key meanwhile
  if (!asking) {
    asking = askForKey(Boolean(usedKey)).then((key) => {
      asking = null;
      if (key) setApiKey(key);
      return Boolean(key);
    });
  }
  return asking;
}

function headersWith(key) {
  const headers = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
  return headers;
}

/**
 * The ApiError of a refused answer's status and (parsed) body. A 403 `insufficient_scope` means the key may no
 * longer do what the page offered (its scopes changed): `apercu:scope` tells the page to ask again what it may do.
 */
function apiError(status, body) {
  const error = body && body.error;
  const refused = new ApiError(status, error?.code || "http_error", error?.message || `HTTP ${status}`);
  if (status === 403 && refused.code === "insufficient_scope") document.dispatchEvent(new CustomEvent("apercu:scope"));
  return refused;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  return apiError(response.status, body);
}

/**
 * Who the key in use is, as `GET /` tells its holder: {name, tenant, scopes}, or null when the service says
 * nothing (no keys on this service, no key yet, or one it does not take: a request that needs one then asks).
 */
export async function whoAmI() {
  const response = await fetch(at("/"), { headers: headersWith(apiKey()), cache: "no-store" });
  if (!response.ok) throw await errorOf(response);
  return (await response.json()).caller || null;
}

// --- requests ------------------------------------------------------------------------------------------------

/** fetch() with the key; answers with status in `accept` (default: 2xx) are returned, others thrown. */
export async function request(method, path, { accept = [], signal, cache = "no-store" } = {}) {
  for (;;) {
    const key = apiKey();
    const response = await fetch(path, { method, headers: headersWith(key), signal, cache });
    if (response.status === 401 && (await keyRefused(key))) continue;
    if (response.ok || accept.includes(response.status)) return response;
    throw await errorOf(response);
  }
}

export async function getJSON(path, options) {
  return (await request("GET", path, options)).json();
}

/** Runs at most `size` of the tasks given to it at a time, the others in the order they came. */
function limiter(size) {
  let running = 0;
  const queue = [];
  const next = () => {
    if (running >= size || !queue.length) return;
    running += 1;
    const { task, resolve, reject } = queue.shift();
    task().then(resolve, reject).finally(() => {
      running -= 1;
      next();
    });
  };
  return (task) => new Promise((resolve, reject) => {
    queue.push({ task, resolve, reject });
    next();
  });
}

const pollSlots = limiter(LONG_POLLS);
const uploadSlots = limiter(UPLOADS);
const watches = new Map();

/**
 * Follow an image until it succeeds or fails: `listener(image)` after each answer; resolves to the final image.
 * One watch per id however many parts of the page ask (an upload's row and its gallery card share it).
 */
export function watchImage(id, listener) {
  let watch = watches.get(id);
  if (!watch) {
    watch = { listeners: new Set() };
    watch.promise = follow(id, watch.listeners).finally(() => watches.delete(id));
    watches.set(id, watch);
  }
  if (listener) watch.listeners.add(listener);
  return watch.promise;
}

async function follow(id, listeners) {
  let backoff = 1000;
  for (;;) {
    // Many images waiting at once: shorter waits, so each is looked at often while only a few polls are open.
    const wait = watches.size > LONG_POLLS ? 2 : 10;
    let image;
    try {
      image = await pollSlots(() => getJSON(at(`/images/${id}?wait=${wait}`)));
    } catch (error) {
      if (error instanceof ApiError) throw error; // 404 once deleted, 401 declined: nothing more to wait for
      await sleep(backoff); // the service restarting, the network down: keep trying, less and less often
      backoff = Math.min(backoff * 2, 15000);
      continue;
    }
    backoff = 1000;
    for (const listener of listeners) listener(image);
    if (isFinal(image.status)) return image;
  }
}

/** POST /images with upload progress (fetch cannot report it); resolves to the 202 body, a few at a time. */
export function upload(file, onProgress) {
  return uploadSlots(() => new Promise((resolve, reject) => {
    const send = () => {
      const key = apiKey();
      const xhr = new XMLHttpRequest();
      xhr.open("POST", at("/images"));
      for (const [name, value] of Object.entries(headersWith(key))) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("loadstart", () => onProgress(0));
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", async () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // an answer that is not ours
        }
        if (xhr.status === 401 && (await keyRefused(key))) {
          send();
        } else if ((xhr.status === 202 || (xhr.status === 200 && body?.duplicate)) && body) {
          // 200 with "duplicate": the service already had these bytes (APERCU_DEDUP=reuse): that image is ours
          resolve(body);
        } else {
          reject(apiError(xhr.status, body));
        }
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the connection to the service failed")));
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    };
    send();
  }));
}

/**
 * A resumable upload (tus, with tus-js-client shipped in static/vendor/): the file in small PATCHes, each of which
 * survives on the service whatever happens to the next, with `pause()` and `resume()`; a cut connection (the
 * network gone) is retried for minutes, from where the service says it stands. `done` resolves to the image's
 * 202-like body once the last byte made it (its id from `Apercu-Image-Id`), or rejects with the ApiError that
 * refused it (415: no image).
 */
export function uploadResumable(file, onProgress) {
  let current = null;
  const done = uploadSlots(() => new Promise((resolve, reject) => {
    const key = apiKey();
    current = new window.tus.Upload(file, {
      endpoint: "/uploads/",
      headers: headersWith(key),
      chunkSize: RESUMABLE_CHUNK,
      retryDelays: RESUMABLE_RETRIES,
      // Offline is exactly when to keep trying (tus-js-client's default gives up while the browser is offline);
      // a refusal (4xx) is final, but a conflict (409: ask where to resume) and a rate limit (429).
      onShouldRetry: (error) => {
        const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
        return status === 0 || status >= 500 || [409, 423, 429].includes(status);
      },
      metadata: { filename: file.name },
      removeFingerprintOnSuccess: true,
      onProgress: (sent, total) => onProgress(total ? sent / total : 0),
      onSuccess: ({ lastResponse }) => {
        const id = lastResponse.getHeader("Apercu-Image-Id");
        resolve({ id, status: "pending", links: { self: `/images/${id}` } });
      },
      onError: (error) => {
        const response = error.originalResponse;
        if (!response) {
          reject(new ApiError(0, "network", String(error.message || error)));
          return;
        }
        let body = null;
        try {
          body = JSON.parse(response.getBody());
        } catch {
          // an answer that is not ours
        }
        reject(apiError(response.getStatus(), body));
      },
    });
    current.start();
  }));
  return {
    done,
    pause: () => current?.abort(),
    resume: () => current?.start(),
  };
}

// --- renditions and thumbnails -------------------------------------------------------------------------------

/**
 * Put one of an image's views into an <img>. `urls` are the image JSON's `views[view]`, signed rendition URLs by
 * density ({"1x": ..., "2x": ...}): shown as a plain src and srcset, which needs no API key (the signature stands
 * in for it) and which the browser caches (the URLs never change). Without them (API keys required and no URL key
 * on the server: nothing can be signed) or when they fail, the thumbnail at `thumbnail` through loadThumbnail.
 */
export function loadView(img, urls, thumbnail, options) {
  if (!urls) return loadThumbnail(img, thumbnail, options);
  img.srcset = Object.entries(urls).map(([density, url]) => `${url} ${density}`).join(", ");
  return show(img, urls["1x"]).catch(() => {
    img.removeAttribute("srcset"); // else it would still win over the fallback's src
    return loadThumbnail(img, thumbnail, options);
  });
}

const blobs = new WeakMap();

/** Let go of the blob URL an <img> was showing, if any (a card leaving the page). */
export function releaseThumbnail(img) {
  const url = blobs.get(img);
  if (url) URL.revokeObjectURL(url);
  blobs.delete(img);
}

function show(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve(img);
    img.onerror = () => reject(new ApiError(0, "image", "the thumbnail could not be shown"));
    img.src = src;
  });
}

/**
 * Put a thumbnail into an <img>. Without a key it is a plain src (cacheable, and a presigned S3 redirect works);
 * with a key, or when the plain src failed, it is fetched with the key and shown from a blob: URL, which also
 * says why it failed: 409 (still rendering) is retried after Retry-After, up to `tries` times.
 */
export async function loadThumbnail(img, url, { tries = 30, signal } = {}) {
  if (!apiKey()) {
    try {
      return await show(img, url);
    } catch {
      // find out why below: not ready yet, a key needed, gone
    }
  }
  for (let attempt = 1; ; attempt += 1) {
    let response;
    try {
      response = await request("GET", url, { accept: [409], signal, cache: "default" });
    } catch (error) {
      if (error instanceof ApiError) throw error;
      return show(img, url); // a redirect fetch() may not follow (S3 without CORS): let the browser try
    }
    if (response.status === 409 && attempt < tries) {
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await sleep(Math.min(seconds, 10) * 1000);
      continue;
    }
    if (response.status === 409) throw new ApiError(409, "not_ready", "the thumbnail is not ready yet");
    const blobUrl = URL.createObjectURL(await response.blob());
    releaseThumbnail(img);
    blobs.set(img, blobUrl);
    return show(img, blobUrl);
  }
}
