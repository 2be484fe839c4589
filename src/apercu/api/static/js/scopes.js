// What the API key in use may do, so that the page offers only that: `GET /` tells a key's holder the key's
// name, tenant and scopes (`caller`). Controls that need a scope carry `data-scope="<scope>"` and are hidden
// without it; a note says what the key cannot do. The service stays the judge: a 403 `insufficient_scope` (the
// key's scopes changed since) makes the page ask again (api.js's `apercu:scope`), and so does a new key.

import { apiKey, whoAmI } from "./api.js";

const DOING = { read: "list images", write: "upload images", delete: "delete images" };

let caller = null; // null: the service said nothing of a key (none needed, or none yet): offer everything
let asked = 0; // the latest question: an older answer (an earlier key's) is stale

/** Whether the key may do `scope` ("read", "write", "delete"), as far as the page knows. */
export function may(scope) {
  return !caller || caller.scopes.includes(scope);
}

/** Ask the service what the key in use may do, then show or hide what depends on it. */
export async function learnScopes() {
  const question = ++asked;
  const key = apiKey();
  let found = null;
  try {
    found = await whoAmI();
  } catch {
    // the service did not answer: offer everything, and let it refuse what it must
  }
  if (question !== asked || key !== apiKey()) return;
  caller = found;
  applyScopes(document);
}

/** Hide the controls that need a scope the key does not hold, and say what the key cannot do. */
function applyScopes(root) {
  for (const control of root.querySelectorAll("[data-scope]")) {
    const held = may(control.dataset.scope);
    // The focus must not vanish with a control (a Delete just refused): it goes to the content, for the keyboard.
    if (!held && control.contains(document.activeElement)) document.getElementById("main").focus();
    control.hidden = !held;
  }
  const note = document.getElementById("scope-note");
  const cannot = Object.keys(DOING).filter((scope) => !may(scope));
  note.hidden = !cannot.length;
  if (!cannot.length) return;
  const what = cannot.map((scope) => DOING[scope]).join(" or ");
  const readOnly = may("read") && !may("write") && !may("delete");
  note.textContent = readOnly
    ? `The API key “${caller.name}” is read-only: you can browse images, but not upload or delete them.`
    : `The API key “${caller.name}” may not ${what}.`;
}
