// The gallery: one card per image, newest first, a page at a time (GET /images?limit=&cursor=). Cards of images
// still being processed follow their status; a card's tile (a 256 px square rendition, 1x and 2x) is loaded
// once the image is ready, lazily as it nears the viewport.

import { ApiError, at, getJSON, isFinal, loadView, releaseThumbnail, watchImage } from "./api.js";
import { clear, h } from "./dom.js";
import * as fmt from "./format.js";

const PAGE_SIZE = 24;
const TILE = 256; // the `tile` view's box (rendition_urls.PAGE_VIEWS), in CSS pixels

export class Gallery {
  constructor() {
    this.list = document.getElementById("gallery");
    this.more = document.getElementById("gallery-more");
    this.empty = document.getElementById("gallery-empty");
    this.error = document.getElementById("gallery-error");
    this.cards = new Map();
    this.cursor = null;
    this.generation = 0; // a reload makes the answers of earlier requests stale
    this.more.addEventListener("click", () => this.load(this.cursor));
    document.getElementById("gallery-refresh").addEventListener("click", () => this.reload());
  }

  async reload() {
    this.generation += 1;
    for (const card of this.cards.values()) releaseThumbnail(card.img);
    this.cards.clear();
    clear(this.list);
    this.cursor = null;
    await this.load(null);
  }

  async load(cursor) {
    const generation = this.generation;
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    this.more.disabled = true;
    this.list.setAttribute("aria-busy", "true");
    try {
      const page = await getJSON(at(`/images?${query}`));
      if (generation !== this.generation) return;
      this.error.hidden = true;
      const before = this.cards.size;
      for (const image of page.items) this.put(image, { prepend: false });
      this.cursor = page.next_cursor;
      // "Load more" may vanish with the last page: the focus goes on to the first of the cards it brought.
      if (cursor && this.cards.size > before) [...this.cards.values()][before].link.focus();
    } catch (error) {
      if (generation !== this.generation) return;
      this.showError(error);
    } finally {
      this.more.disabled = false;
      this.more.hidden = !this.cursor;
      this.list.removeAttribute("aria-busy");
      this.updateEmpty();
    }
  }

  showError(error) {
    const why = error instanceof ApiError ? error.message : "the service did not answer";
    this.error.textContent = `The images could not be listed: ${why}.`;
    this.error.hidden = false;
  }

  updateEmpty() {
    this.empty.hidden = this.cards.size > 0 || !this.error.hidden;
  }

  /** Add a card for the image, or bring its card up to date. */
  put(image, { prepend }) {
    let card = this.cards.get(image.id);
    if (!card) {
      card = this.createCard(image);
      this.cards.set(image.id, card);
      if (prepend) this.list.prepend(card.item);
      else this.list.append(card.item);
      this.updateEmpty();
    }
    this.update(card, image);
    if (!isFinal(image.status)) watchImage(image.id, (latest) => this.refresh(latest)).catch(() => {});
  }

  refresh(image) {
    const card = this.cards.get(image.id);
    if (card) this.update(card, image);
  }

  remove(id) {
    const card = this.cards.get(id);
    if (!card) return;
    releaseThumbnail(card.img);
    card.item.remove();
    this.cards.delete(id);
    this.updateEmpty();
  }

  /** The link of a card, to give it the focus back when returning from the image's page. */
  linkOf(id) {
    return this.cards.get(id)?.link || null;
  }

  createCard(image) {
    const img = h("img", { alt: "", decoding: "async", loading: "lazy", width: TILE, height: TILE });
    const placeholder = h("span", { class: "thumb__placeholder", "aria-hidden": "true" });
    const name = h("span", { class: "card__name" });
    const meta = h("span", { class: "card__meta" });
    const badge = h("span", { class: "badge" });
    const link = h("a", { class: "card__link", href: `#/images/${image.id}` },
      h("span", { class: "thumb" }, img, placeholder, badge),
      h("span", { class: "card__body" }, name, meta));
    const item = h("li", { class: "card", dataset: { id: image.id } }, link);
    return { item, link, img, placeholder, name, meta, badge, thumbnailLoading: false };
  }

  update(card, image) {
    card.item.dataset.status = image.status;
    card.name.textContent = image.filename || image.id;
    card.link.title = image.filename || image.id;
    card.badge.textContent = fmt.statusLabel(image.status);
    card.badge.className = `badge badge--${image.status}`;
    const meta = image.metadata;
    if (image.status === "failure") card.meta.textContent = image.error || "";
    else if (meta) card.meta.textContent = [meta.format, fmt.dimensions(meta), fmt.bytes(meta.bytes)].filter(Boolean).join(" · ");
    else card.meta.textContent = "";
    card.placeholder.textContent = image.status === "failure" ? "No thumbnail" : image.status === "success" ? "" : "…";
    if (image.status === "success" && !card.thumbnailLoading) {
      card.thumbnailLoading = true;
      loadView(card.img, image.views?.tile, image.links.thumbnail)
        .then(() => card.item.classList.add("card--loaded"))
        .catch(() => { card.placeholder.textContent = "No thumbnail"; });
    }
  }
}
