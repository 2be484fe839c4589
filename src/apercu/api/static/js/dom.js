// Building DOM nodes without HTML strings: every piece of text (file names, metadata) becomes a text node, so
// nothing an uploaded file carries can ever be parsed as markup.

/**
 * h("a", {href: "#/", class: "x"}, "text", child) -> element.
 * Attributes: `class`, `dataset` (an object), `on<event>` (a function), booleans (present when true), others
 * as attributes. Children: strings and numbers become text; null, undefined and false are skipped; arrays nest.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

/** Tell screen readers about a change that happened away from the focus (an upload finished, a delete). */
export function announce(message) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  // A change in a separate task is announced even when the text is the same as last time.
  setTimeout(() => { region.textContent = message; }, 50);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
