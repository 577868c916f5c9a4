// Keyboard shortcuts for the review pages. An element with data-key="x" is activated by the key x;
// elements inside a [hidden] panel or disabled ones are ignored, so the same key can mean different
// things as panels open and close. The shortcut list on each page is rendered by the server.
(function () {
  "use strict";

  const isTyping = (el) => !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) &&
    !(el.tagName === "INPUT" && (el.type === "checkbox" || el.type === "radio"));
  const usable = (el) => !el.disabled && !el.closest("[hidden]");

  function keyOf(event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) return "ctrl+enter";
    if (event.ctrlKey || event.metaKey || event.altKey) return null;
    return event.key;
  }

  function closePanels() {
    document.querySelectorAll(".panel:not([hidden])").forEach((panel) => { panel.hidden = true; });
  }

  function openPanel(id) {
    closePanels();
    const panel = document.getElementById(id);
    if (!panel) return;
    panel.hidden = false;
    // The editor and the buttons that save it in view, not below the fold.
    panel.scrollIntoView({ block: "nearest" });
    const field = panel.querySelector("textarea");
    if (field) {
      field.focus();
      field.setSelectionRange(field.value.length, field.value.length);
      return;
    }
    // A choice first (the reject reasons: 1–4 pick one), then the comment.
    panel.querySelector("input[type=radio]")?.focus();
  }

  // A button that needs a choice first (a reject reason) points at the choices instead of sending.
  function missingChoice(el) {
    const name = el.dataset.requires;
    if (!name || el.form?.querySelector(`input[name="${name}"]:checked`)) return false;
    el.form?.querySelector(`input[name="${name}"]`)?.focus();
    return true;
  }

  function activate(el) {
    if (missingChoice(el)) return;
    if (el.dataset.toggle) {
      openPanel(el.dataset.toggle);
    } else if (el.type === "radio") {
      el.click();
      // Picked: on to the comment; Ctrl+Enter saves.
      el.closest(".panel")?.querySelector("input[type=text]")?.focus();
    } else {
      el.click();
    }
  }

  // Queue tables: j / k move a selection over the rows, o or Enter opens the selected one.
  function moveSelection(step) {
    const rows = Array.from(document.querySelectorAll("tr[data-row]"));
    if (!rows.length) return false;
    const at = rows.findIndex((row) => row.classList.contains("selected"));
    const next = Math.min(rows.length - 1, Math.max(0, at < 0 ? 0 : at + step));
    rows.forEach((row) => row.classList.remove("selected"));
    rows[next].classList.add("selected");
    rows[next].scrollIntoView({ block: "nearest" });
    return true;
  }

  function openSelection() {
    const row = document.querySelector("tr[data-row].selected");
    if (!row) return false;
    window.location.assign(row.dataset.href);
    return true;
  }

  document.addEventListener("keydown", (event) => {
    const key = keyOf(event);
    if (key === null) return;
    const typing = isTyping(document.activeElement);
    if (key === "Escape") {
      if (typing) document.activeElement.blur();
      closePanels();
      return;
    }
    if (typing && key !== "ctrl+enter") return;
    if (key === "?") {
      document.getElementById("shortcuts")?.classList.toggle("collapsed");
      return;
    }
    const hasRows = document.querySelector("tr[data-row]") !== null;
    if (hasRows && (key === "j" || key === "k")) {
      if (moveSelection(key === "j" ? 1 : -1)) event.preventDefault();
      return;
    }
    if (hasRows && (key === "o" || key === "Enter") && openSelection()) {
      event.preventDefault();
      return;
    }
    const target = Array.from(document.querySelectorAll("[data-key]"))
      .find((el) => el.dataset.key === key && usable(el));
    if (target) {
      event.preventDefault();
      activate(target);
    }
  });

  document.addEventListener("click", (event) => {
    const needing = event.target.closest("button[data-requires]");
    if (needing && missingChoice(needing)) {
      event.preventDefault();
      return;
    }
    const closer = event.target.closest("[data-close]");
    if (closer) {
      document.getElementById(closer.dataset.close).hidden = true;
      return;
    }
    const toggler = event.target.closest("[data-toggle]");
    if (toggler && !toggler.disabled) {
      openPanel(toggler.dataset.toggle);
      return;
    }
    const row = event.target.closest("tr[data-row]");
    if (row && !event.target.closest("a, button, input, select")) window.location.assign(row.dataset.href);
  });
})();
