// Uploading: files from the picker or dropped on the drop zone, each with a progress bar while it is sent and
// then its processing status until it is ready or has failed. Accepted images go into the gallery at once.

import { ApiError, RESUMABLE_ABOVE, upload, uploadResumable, watchImage } from "./api.js";
import { announce, h } from "./dom.js";
import * as fmt from "./format.js";

export class Uploads {
  constructor(gallery) {
    this.gallery = gallery;
    this.input = document.getElementById("file-input");
    this.zone = document.getElementById("dropzone");
    this.list = document.getElementById("uploads");
    this.actions = document.getElementById("uploads-actions");
    this.zone.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file chosen again is a new upload
    });
    this.zone.addEventListener("dragenter", (event) => this.dragOver(event));
    this.zone.addEventListener("dragover", (event) => this.dragOver(event));
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("dropzone--over"));
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.zone.classList.remove("dropzone--over");
      this.add([...(event.dataTransfer?.files || [])]);
    });
    // A file dropped beside the zone must not replace the page with the file.
    for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
    document.getElementById("uploads-clear").addEventListener("click", () => this.clearFinished());
  }

  dragOver(event) {
    if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    this.zone.classList.add("dropzone--over");
  }

  add(files) {
    if (!files.length) return;
    this.list.hidden = false;
    this.actions.hidden = false;
    announce(files.length === 1 ? `Uploading ${files[0].name}` : `Uploading ${files.length} files`);
    for (const file of files) this.start(file);
  }

  clearFinished() {
    for (const item of this.list.querySelectorAll(".upload--done")) item.remove();
    const empty = !this.list.children.length;
    this.list.hidden = empty;
    this.actions.hidden = empty;
  }

  async start(file) {
    const row = this.createRow(file);
    this.list.prepend(row.item);
    let accepted;
    const progress = (fraction) => {
      row.progress.value = fraction;
      if (row.item.dataset.status !== "paused") {
        this.setState(row, "uploading", fraction < 1 ? `Uploading ${Math.floor(fraction * 100)} %` : "Uploaded, saving");
      }
    };
    try {
      accepted = await (file.size > RESUMABLE_ABOVE ? this.resumable(file, row, progress) : upload(file, progress));
    } catch (error) {
      const why = error instanceof ApiError ? error.message : String(error);
      this.finish(row, "failure", `Not uploaded: ${why}`);
      announce(`${file.name} was not uploaded: ${why}`);
      return;
    }
    row.progress.value = 1;
    row.item.dataset.id = accepted.id;
    row.link.href = `#/images/${accepted.id}`;
    row.link.hidden = false;
    this.setState(row, "pending", fmt.statusLabel("pending"));
    this.gallery.put({ id: accepted.id, status: accepted.status, filename: file.name, links: accepted.links },
      { prepend: true });
    try {
      const image = await watchImage(accepted.id, (latest) => {
        if (latest.status === "processing") this.setState(row, "processing", fmt.statusLabel("processing"));
      });
      if (image.status === "success") {
        this.finish(row, "success", fmt.statusLabel("success"));
        announce(`${file.name} is ready`);
      } else {
        this.finish(row, "failure", `Failed: ${image.error || "processing failed"}`);
        announce(`${file.name} failed: ${image.error || "processing failed"}`);
      }
    } catch (error) {
      this.finish(row, "failure", error instanceof ApiError && error.status === 404 ? "Deleted" : `Unknown: ${error.message}`);
    }
  }

  /** A big file by tus, with a Pause / Resume button on its row for as long as it is sent. */
  async resumable(file, row, progress) {
    const sending = uploadResumable(file, progress);
    const button = h("button", { type: "button", class: "button button--quiet upload__pause" }, "Pause");
    button.addEventListener("click", () => {
      const paused = row.item.dataset.status === "paused";
      if (paused) {
        sending.resume();
        this.setState(row, "uploading", "Resuming");
      } else {
        sending.pause();
        this.setState(row, "paused", `Paused at ${Math.floor(row.progress.value * 100)} %`);
      }
      button.textContent = paused ? "Pause" : "Resume";
    });
    row.link.before(button);
    try {
      return await sending.done;
    } finally {
      button.remove();
    }
  }

  createRow(file) {
    const name = h("span", { class: "upload__name" }, file.name);
    const size = h("span", { class: "upload__size" }, fmt.bytes(file.size));
    const state = h("span", { class: "upload__state" }, "Waiting to upload");
    const link = h("a", { class: "upload__link", hidden: true }, "View", h("span", { class: "visually-hidden" }, ` ${file.name}`));
    const progress = h("progress", { class: "upload__progress", max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
    const item = h("li", { class: "upload", dataset: { status: "queued" } },
      h("div", { class: "upload__row" }, name, size, state, link), progress);
    return { item, state, link, progress };
  }

  setState(row, status, text) {
    row.item.dataset.status = status;
    row.state.textContent = text;
  }

  finish(row, status, text) {
    this.setState(row, status, text);
    row.item.classList.add("upload--done");
  }
}
