// One modal dialog (the native <dialog>: focus trapped, Escape closes) reused for every form.
import { $, h, replace } from "./dom.js";

let current = null;

export function field(label, name, { required = false, value = "" } = {}) {
  const input = h("input", { name, required, value });
  return { input, label: h("label", {}, label, " ", input) };
}

export function openDialog(title, body, okLabel, onOk) {
  const dialog = $("dialog");
  $("dialog-title").textContent = title;
  replace($("dialog-body"), body);
  $("dialog-error").textContent = "";
  // No OK button for a dialog that only shows something (okLabel null).
  $("dialog-ok").hidden = okLabel === null;
  $("dialog-ok").textContent = okLabel ?? "";
  current = onOk;
  if (!dialog.open) dialog.showModal();
  const first = $("dialog-body").querySelector("input, select, button");
  (first || $("dialog-ok")).focus();
}

$("dialog-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const run = current;
  const ok = $("dialog-ok");
  ok.disabled = true;
  try {
    await run(e.target);
    if (current === run) $("dialog").close();
  } catch (err) {
    $("dialog-error").textContent = err.message;
  } finally {
    ok.disabled = false;
  }
});

$("dialog-cancel").addEventListener("click", () => $("dialog").close());
