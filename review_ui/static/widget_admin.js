// The widget admin page: the live preview follows the form as it is edited, and the snippet copies.
(() => {
  "use strict";
  const form = document.getElementById("widget-form");
  const frame = document.getElementById("widget-preview");
  const attr = (s) => String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");

  function current() {
    const config = JSON.parse(frame.dataset.config).config;
    const value = (name) => form.elements[name] && form.elements[name].value.trim();
    for (const name of ["title", "greeting", "accent_color", "text_color", "position"]) {
      config[name] = value(name) || config[name];
    }
    for (const input of form.querySelectorAll("[data-string]")) {
      if (input.value.trim()) config.strings[input.dataset.string] = input.value.trim();
    }
    config.handoff = Boolean(value("handoff_webhook_url") || value("handoff_email"));
    return config;
  }

  function render() {
    const preview = JSON.stringify({ config: current() });
    frame.srcdoc = "<!doctype html><html lang=en><head><meta charset=utf-8></head><body>" +
      `<script src="${attr(frame.dataset.api)}/widget.js" data-key="${attr(frame.dataset.key)}" ` +
      `data-open data-preview="${attr(preview)}"></` + "script></body></html>";
  }

  if (form && frame) {
    let timer = null;
    form.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(render, 250);
    });
    render();
  }
  const copy = document.getElementById("copy-snippet");
  if (copy) {
    copy.addEventListener("click", async () => {
      const text = document.getElementById("snippet").textContent;
      try {
        await navigator.clipboard.writeText(text);
        document.getElementById("copied").textContent = "Copied.";
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById("snippet"));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        document.getElementById("copied").textContent = "Selected: press Ctrl+C.";
      }
    });
  }
})();
