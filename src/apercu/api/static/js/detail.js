// One image's page (#/images/<id>): a larger preview beside its facts in groups (the file, camera and exposure,
// location), then every metadata block (EXIF, XMP, IPTC, ICC, text) and the raw JSON, collapsed; and delete.

import { ApiError, at, getJSON, isFinal, loadThumbnail, loadView, releaseThumbnail, request, watchImage } from "./api.js";
import { announce, h } from "./dom.js";
import * as fmt from "./format.js";
import { may } from "./scopes.js";

const PREVIEW_SIZE = 512;
const CAMERA = [
  ["Make", "Make"],
  ["Model", "Model"],
  ["LensModel", "Lens"],
  ["ExposureTime", "Exposure", fmt.exposure],
  ["FNumber", "Aperture", fmt.aperture],
  ["ISO", "ISO"],
  ["FocalLength", "Focal length", fmt.focal],
  ["FocalLengthIn35mmFormat", "35 mm equivalent", fmt.focal],
  ["DateTimeOriginal", "Taken", fmt.cameraDate],
];
const BLOCKS = [
  ["exif", "EXIF"],
  ["xmp", "XMP"],
  ["iptc", "IPTC"],
  ["icc", "ICC colour profile"],
  ["text", "Text and comments"],
];

/** A <dl> of the [label, content] rows whose content (text, a number or a node) is not empty. */
/** The shown picture's size in its own pixels: a 2x source's naturalWidth is in CSS pixels, half of them. */
function pixels(img, urls) {
  const [density] = Object.entries(urls || {}).find(([, url]) => img.currentSrc.endsWith(url)) || ["1x"];
  const scale = parseFloat(density);
  return `${Math.round(img.naturalWidth * scale)} × ${Math.round(img.naturalHeight * scale)}`;
}

function facts(rows) {
  const list = h("dl", { class: "facts" });
  for (const [label, content] of rows) {
    if (content === "" || content === null || content === undefined || content === false) continue;
    list.append(h("div", { class: "facts__row" }, h("dt", {}, label), h("dd", {}, content)));
  }
  return list.children.length ? list : null;
}

function group(title, ...content) {
  const body = content.filter(Boolean);
  return body.length ? h("section", { class: "group" }, h("h3", { class: "group__title" }, title), body) : null;
}

function fileFacts(image) {
  const meta = image.metadata || {};
  const raw = meta.raw_width && (meta.raw_width !== meta.width || meta.raw_height !== meta.height)
    ? ` (stored ${meta.raw_width} × ${meta.raw_height})` : "";
  const animation = meta.animated ? [meta.loop === 0 ? "loops forever" : meta.loop ? `loops ${meta.loop} times` : "",
    meta.duration_ms ? `${meta.duration_ms} ms` : ""].filter(Boolean).join(", ") : "";
  return facts([
    ["Format", [meta.format, meta.mime_type && `(${meta.mime_type})`].filter(Boolean).join(" ")],
    ["Dimensions", fmt.dimensions(meta) && `${fmt.dimensions(meta)} px${raw}`],
    ["Mode", [meta.mode, meta.bit_depth && `${meta.bit_depth} bit`, meta.has_alpha && "with alpha"].filter(Boolean).join(", ")],
    ["Colour space", meta.color_space],
    ["Frames", meta.frames],
    ["Animation", animation],
    ["Orientation", meta.orientation],
    ["Resolution", Array.isArray(meta.dpi) ? `${meta.dpi.map((d) => +d.toFixed(1)).join(" × ")} dpi` : ""],
    ["File size", typeof meta.bytes === "number" ? fmt.bytesExact(meta.bytes) : ""],
    ["SHA-256", meta.sha256 && h("code", { class: "hash" }, meta.sha256)],
    ["File name", image.filename],
    ["Uploaded", fmt.timestamp(image.uploaded_at)],
    ["Processed", fmt.timestamp(image.processed_at)],
    ["Id", image.id],
  ]);
}

function cameraFacts(exif) {
  if (!exif) return null;
  return facts(CAMERA.map(([tag, label, format]) => [label, tag in exif ? (format || fmt.value)(exif[tag]) : ""]));
}

function locationGroup(gps) {
  if (!gps || typeof gps.latitude !== "number" || typeof gps.longitude !== "number") return null;
  const map = h("a", { class: "map-link", href: fmt.openStreetMap(gps), rel: "noopener noreferrer", target: "_blank" },
    "Show on OpenStreetMap", h("span", { class: "visually-hidden" }, " (opens in a new tab)"));
  return group("Location",
    facts([
      ["Position", fmt.position(gps)],
      ["Decimal degrees", `${gps.latitude}, ${gps.longitude}`],
      ["Altitude", typeof gps.altitude === "number" ? `${gps.altitude} m` : ""],
      ["Direction", typeof gps.direction === "number" ? `${gps.direction}°` : ""],
      ["Speed", typeof gps.speed === "number" ? `${gps.speed} ${gps.speed_unit || ""}`.trim() : ""],
      ["GPS time", gps.timestamp ? fmt.cameraDate(gps.timestamp) : ""],
    ]),
    h("p", {}, map));
}

function block(key, title, data) {
  if (!data || typeof data !== "object" || !Object.keys(data).length) return null;
  const rows = Object.entries(data).map(([name, raw]) => [name, fmt.value(raw)]);
  return h("details", { class: "block", dataset: { block: key } },
    h("summary", {}, title, h("span", { class: "block__count" }, ` ${rows.length} ${rows.length === 1 ? "field" : "fields"}`)),
    facts(rows));
}

function notices(image) {
  const warnings = image.metadata?.warnings || [];
  return [
    image.status === "failure" && h("div", { class: "notice notice--error", role: "note" },
      h("strong", {}, "Processing failed. "), image.error || "No reason was given."),
    warnings.length > 0 && h("div", { class: "notice notice--warning", role: "note" },
      h("strong", {}, warnings.length === 1 ? "Warning" : "Warnings"),
      h("ul", {}, warnings.map((warning) => h("li", {}, fmt.value(warning))))),
  ];
}

export class Detail {
  constructor({ gallery, onDeleted }) {
    this.view = document.getElementById("detail-view");
    this.dialog = document.getElementById("delete-dialog");
    this.gallery = gallery;
    this.onDeleted = onDeleted;
    this.current = null;
  }

  /** Show the image with this id; re-rendered when its processing ends while it is shown. */
  async show(id) {
    this.current = id;
    this.clearView();
    this.view.append(h("p", { class: "loading" }, "Loading…"));
    let image;
    try {
      image = await getJSON(at(`/images/${id}`));
    } catch (error) {
      if (this.current !== id) return;
      this.clearView();
      this.view.append(this.header(null, id), h("p", { class: "notice notice--error", role: "alert" },
        error instanceof ApiError && error.status === 404 ? "There is no image with this id (it may have been deleted)."
          : `The image could not be loaded: ${error.message}.`));
      this.focusTitle();
      return;
    }
    if (this.current !== id) return;
    this.render(image);
    this.focusTitle();
    if (!isFinal(image.status)) {
      watchImage(id, (latest) => {
        if (this.current === id && isFinal(latest.status)) {
          this.render(latest);
          announce(`${latest.filename || "The image"} is ${fmt.statusLabel(latest.status).toLowerCase()}`);
        } else if (this.current === id) {
          this.view.querySelector(".detail__status").replaceWith(this.status(latest));
        }
      }).catch(() => {});
    }
  }

  hide() {
    this.current = null;
    this.clearView();
  }

  clearView() {
    for (const img of this.view.querySelectorAll("img")) releaseThumbnail(img);
    this.view.replaceChildren();
  }

  focusTitle() {
    this.view.querySelector("h2")?.focus();
  }

  status(image) {
    return h("span", { class: `badge badge--${image.status} detail__status` }, fmt.statusLabel(image.status));
  }

  header(image, id) {
    const title = h("h2", { class: "detail__title", id: "detail-title", tabindex: "-1" }, image ? image.filename || id : "Image not found");
    const remove = image && h("button", { type: "button", class: "button button--danger", id: "delete-button",
      dataset: { scope: "delete" }, hidden: !may("delete"), onclick: () => this.confirmDelete(image) }, "Delete…");
    return h("div", { class: "detail__head" },
      h("a", { class: "back", href: "#/" }, h("span", { "aria-hidden": "true" }, "← "), "All images"),
      h("div", { class: "detail__heading" }, title,
        image && h("p", { class: "detail__sub" }, this.status(image),
          h("span", {}, `Uploaded ${fmt.timestamp(image.uploaded_at)}`))),
      remove);
  }

  render(image) {
    const meta = image.metadata || {};
    this.clearView();
    const preview = this.preview(image);
    const blocks = BLOCKS.map(([key, title]) => block(key, title, meta[key]));
    const raw = h("details", { class: "block", dataset: { block: "json" } }, h("summary", {}, "Raw JSON"),
      h("pre", { class: "json" }, JSON.stringify(image, null, 2)));
    this.view.append(h("article", { class: "detail", "aria-labelledby": "detail-title", dataset: { id: image.id } },
      this.header(image, image.id),
      notices(image),
      h("div", { class: "detail__grid" },
        preview,
        h("div", { class: "detail__facts" },
          group("File", fileFacts(image)),
          group("Camera and exposure", cameraFacts(meta.exif)),
          locationGroup(meta.gps),
          h("div", { class: "blocks" }, blocks, raw)))));
  }

  preview(image) {
    const { width, height } = image.metadata || {}; // the upright size: the <img> keeps its shape while loading
    const img = h("img", { class: "preview__img", alt: `Preview of ${image.filename || "the image"}`, width, height });
    const empty = h("p", { class: "preview__empty", hidden: true });
    const note = h("p", { class: "preview__note" });
    const figure = h("figure", { class: "preview" }, h("div", { class: "preview__frame" }, img, empty), note);
    const nothing = (text) => {
      img.hidden = true;
      empty.hidden = false;
      empty.textContent = text;
      note.textContent = "";
    };
    if (image.status !== "success") {
      nothing(image.status === "failure" ? "No thumbnail: processing failed" : "The thumbnail comes once processing ends");
      return figure;
    }
    const thumb = image.thumbnail;
    note.textContent = thumb ? `Thumbnail ${thumb.width} × ${thumb.height}, ${fmt.bytes(thumb.bytes)}` : "";
    // The preview rendition (1200 px wide, 1x and 2x), else a larger thumbnail (rendered on first request, hence
    // ?wait), else the stored default thumbnail.
    loadView(img, image.views?.preview, `${image.links.thumbnail}?size=${PREVIEW_SIZE}&wait=10`, { tries: 1 })
      .then(() => { note.textContent = `Preview ${pixels(img, image.views?.preview)}`; })
      .catch(() => loadThumbnail(img, image.links.thumbnail))
      .catch(() => nothing("The thumbnail could not be loaded"));
    return figure;
  }

  confirmDelete(image) {
    document.getElementById("delete-name").textContent = image.filename || image.id;
    this.dialog.returnValue = "";
    this.dialog.addEventListener("close", async () => {
      if (this.dialog.returnValue !== "delete") return;
      try {
        await request("DELETE", image.links.self, { accept: [404] });
      } catch (error) {
        this.view.querySelector(".detail__head").after(
          h("p", { class: "notice notice--error", role: "alert" }, `The image could not be deleted: ${error.message}.`));
        return;
      }
      announce(`${image.filename || "The image"} was deleted`);
      this.onDeleted(image.id);
    }, { once: true });
    this.dialog.showModal();
  }
}
