// Asking for an API key when the service answers 401, and forgetting it. The key itself is kept by api.js.

import { apiKey, onKeyNeeded, setApiKey } from "./api.js";
import { announce } from "./dom.js";

export function setUpKeys() {
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const message = document.getElementById("key-message");
  const forget = document.getElementById("key-forget");

  const showForget = () => { forget.hidden = !apiKey(); };
  showForget();
  document.addEventListener("apercu:key", showForget);
  forget.addEventListener("click", () => {
    setApiKey("");
    announce("The API key was forgotten");
  });

  onKeyNeeded((refused) => new Promise((resolve) => {
    message.textContent = refused
      ? "The service refused the API key this browser had. Enter another one."
      : "This service asks for an API key.";
    input.value = "";
    const finish = (key) => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("close", cancel);
      if (dialog.open) dialog.close();
      resolve(key);
    };
    const submit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (key) finish(key);
    };
    const cancel = () => finish(null); // Escape, or the Cancel button
    form.addEventListener("submit", submit);
    dialog.addEventListener("close", cancel);
    document.getElementById("key-cancel").onclick = () => dialog.close();
    dialog.showModal();
    input.focus();
  }));
}
