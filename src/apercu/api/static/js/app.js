// The page's entry point: two views behind hash routes, `#/` (upload and gallery) and `#/images/<id>` (one
// image), so that the server serves one document and the back button, bookmarks and reloads all work.

import { isId } from "./api.js";
import { Detail } from "./detail.js";
import { Gallery } from "./gallery.js";
import { setUpKeys } from "./keys.js";
import { learnScopes } from "./scopes.js";
import { Uploads } from "./uploads.js";

const galleryView = document.getElementById("gallery-view");
const detailView = document.getElementById("detail-view");

setUpKeys();
const gallery = new Gallery();
new Uploads(gallery);
const detail = new Detail({
  gallery,
  onDeleted(id) {
    gallery.remove(id);
    location.hash = "#/";
  },
});

let lastShown = null; // the image whose page was open, to put the focus back on its card

function route() {
  const match = /^#\/images\/([^/]+)$/.exec(location.hash);
  if (match && isId(match[1])) {
    galleryView.hidden = true;
    detailView.hidden = false;
    document.title = "Image · apercu";
    lastShown = match[1];
    detail.show(match[1]);
    return;
  }
  detail.hide();
  detailView.hidden = true;
  galleryView.hidden = false;
  document.title = "apercu";
  const card = lastShown && gallery.linkOf(lastShown);
  if (card) card.focus();
  else if (lastShown) document.getElementById("gallery-heading").focus();
  lastShown = null;
}

window.addEventListener("hashchange", route);
// A new key (entered after a 401, or forgotten) may do other things and show other images: ask and list again.
document.addEventListener("apercu:key", () => {
  learnScopes();
  gallery.reload();
});
// A key refused a scope the page thought it had (its scopes changed): ask again what it may do.
document.addEventListener("apercu:scope", () => learnScopes());
await learnScopes(); // first: nothing is offered that the key may not do
route();
gallery.reload();
