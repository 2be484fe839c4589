// Metadata values as people read them. Each function takes what the API's JSON holds (see docs/API.md, "The
// image's JSON": numbers as `exiftool -n` gives them, ISO dates) and returns plain text; nothing here builds markup.

export const STATUS_LABELS = { pending: "Waiting", processing: "Processing", success: "Ready", failure: "Failed" };

export function statusLabel(status) {
  return STATUS_LABELS[status] || String(status);
}

export function bytes(count) {
  if (typeof count !== "number") return "";
  if (count < 1024) return `${count}\u00a0B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = count / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)}\u00a0${units[unit]}`; // never "5.2" and "KB" on two lines
}

export function bytesExact(count) {
  return `${bytes(count)} (${count.toLocaleString()} bytes)`;
}

export function dimensions(meta) {
  return meta && meta.width && meta.height ? `${meta.width} × ${meta.height}` : "";
}

/** An ISO timestamp from the API (UTC, with Z) in the reader's own time zone. */
export function timestamp(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/** An EXIF date as the camera wrote it: local time of the shot, with its offset when recorded; never shifted. */
export function cameraDate(iso) {
  return typeof iso === "string" ? iso.replace("T", " ") : String(iso);
}

export function exposure(seconds) {
  if (typeof seconds !== "number" || seconds <= 0) return String(seconds);
  if (seconds >= 1) return `${+seconds.toFixed(1)} s`;
  return `1/${Math.round(1 / seconds)} s`;
}

export const aperture = (value) => (typeof value === "number" ? `ƒ/${+value.toFixed(1)}` : String(value));
export const focal = (value) => (typeof value === "number" ? `${+value.toFixed(1)} mm` : String(value));

function coordinate(value, positive, negative) {
  return `${Math.abs(value).toFixed(6)}°\u00a0${value < 0 ? negative : positive}`;
}

export function position(gps) {
  return `${coordinate(gps.latitude, "N", "S")}, ${coordinate(gps.longitude, "E", "W")}`;
}

export function openStreetMap(gps) {
  const lat = Number(gps.latitude).toFixed(6);
  const lon = Number(gps.longitude).toFixed(6);
  return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=15/${lat}/${lon}`;
}

/** Any metadata value: scalars as text, lists joined, binary blobs by size, structures as compact JSON. */
export function value(raw) {
  if (raw === null || raw === undefined) return "";
  if (typeof raw === "boolean") return raw ? "yes" : "no";
  if (typeof raw === "number" || typeof raw === "string") return String(raw);
  if (Array.isArray(raw)) {
    return raw.every((item) => item === null || typeof item !== "object") ? raw.join(", ") : JSON.stringify(raw);
  }
  const keys = Object.keys(raw);
  if (keys.length === 1 && keys[0] === "bytes") return `binary data, ${bytes(raw.bytes)}`;
  return JSON.stringify(raw);
}
