/* Shadowdesk support widget. One tag puts a bot on a page:
 *   <script src="https://<shadowdesk host>/widget.js" data-key="pk-…" async></script>
 * Styles live in a shadow root (the page's CSS cannot reach in, ours cannot leak out). The
 * conversation's id is kept in sessionStorage (this tab); the conversation itself is on the server.
 * Optional: data-api (another API address), data-open (start open), data-preview (settings JSON
 * that overrides the bot's, for the admin page's live preview). No dependencies, no CDN. */
(() => {
  "use strict";
  const script = document.currentScript;
  const key = script && script.dataset.key;
  if (!key || window.__shadowdeskWidget) return;
  window.__shadowdeskWidget = true;
  const api = (script.dataset.api || new URL(script.src).origin).replace(/\/+$/, "");
  const base = api + "/v1/widget/" + encodeURIComponent(key);
  const preview = script.dataset.preview ? JSON.parse(script.dataset.preview) : null;
  const stored = "shadowdesk:" + key + ":conversation";

  const S = {
    launcher: "Chat with us", placeholder: "Type your question…", send: "Send",
    close: "Close chat", thinking: "Thinking…", sources: "Sources", helpful: "Helpful",
    not_helpful: "Not helpful", thanks_for_feedback: "Thanks for the feedback.",
    talk_to_human: "Talk to a person", handoff_intro: "", email_label: "Your e-mail",
    handoff_note_label: "Anything to add? (optional)", handoff_submit: "Send to our team",
    handoff_cancel: "Back to the chat",
    unavailable: "We can't reach the support service right now. Please try again in a moment.",
    retry: "Try again", new_conversation: "New conversation",
  };
  const THUMB = '<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true"><path ' +
    'fill="currentColor" d="M2 21h4V9H2zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6V3a1.5 1.5 0 0 0-.5-1L13 ' +
    '1 6.6 7.4A2 2 0 0 0 6 9v10a2 2 0 0 0 2 2h9a2 2 0 0 0 1.8-1.2l3-7.1.2-.7z"/></svg>';
  let config = null;
  let conversation = sessionStorage.getItem(stored);
  let busy = false;

  const host = document.createElement("div");
  host.setAttribute("data-shadowdesk", "");
  const root = host.attachShadow({ mode: "open" });
  const css = `
:host{all:initial}
*{box-sizing:border-box;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.w{position:fixed;bottom:20px;right:20px;z-index:2147483000;--a:#2563eb;--t:#fff}
.w.left{right:auto;left:20px}
button{font:inherit;cursor:pointer}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.launcher{display:flex;align-items:center;gap:8px;border:0;border-radius:999px;padding:12px 18px;
background:var(--a);color:var(--t);font-size:15px;box-shadow:0 4px 14px rgba(0,0,0,.25)}
.launcher svg{width:20px;height:20px;fill:currentColor}
.panel{position:absolute;bottom:0;right:0;width:370px;height:min(580px,calc(100vh - 40px));
display:flex;flex-direction:column;background:#fff;color:#111827;border-radius:14px;
overflow:hidden;box-shadow:0 10px 40px rgba(0,0,0,.3);font-size:14px}
.left .panel{right:auto;left:0}
.panel[hidden],.launcher[hidden],[hidden]{display:none!important}
header{display:flex;align-items:center;gap:6px;padding:12px 14px;background:var(--a);color:var(--t)}
h2{flex:1;margin:0;font-size:16px;font-weight:600}
header button{background:transparent;border:1px solid transparent;color:inherit;border-radius:6px;
padding:4px 8px;font-size:13px}
header button:hover{border-color:currentColor}
.log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px;background:#f9fafb}
.m{max-width:85%;padding:9px 12px;border-radius:12px;line-height:1.45;white-space:pre-wrap;
overflow-wrap:anywhere}
.u{align-self:flex-end;background:var(--a);color:var(--t);border-bottom-right-radius:4px}
.b{align-self:flex-start;background:#fff;border:1px solid #e5e7eb;border-bottom-left-radius:4px}
.b.err{border-color:#fca5a5;background:#fef2f2}
.b.note{background:#ecfdf5;border-color:#a7f3d0}
.src{margin:8px 0 0;padding:0;list-style:none;font-size:12px;white-space:normal}
.src a{color:#1d4ed8}
.fb{display:flex;gap:6px;align-items:center;margin-top:6px;font-size:12px;color:#4b5563;white-space:normal}
.fb button{display:inline-flex;border:1px solid #d1d5db;background:#fff;color:#374151;border-radius:6px;padding:4px 8px}
.fb button[aria-pressed=true]{background:#e0e7ff;border-color:#6366f1}
.banner{padding:10px 14px;background:#fffbeb;color:#92400e;border-top:1px solid #fde68a;font-size:13px}
.banner button{margin-left:8px;border:1px solid #d97706;background:#fff;border-radius:6px;padding:2px 8px}
form{margin:0}
.composer{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e7eb;background:#fff}
textarea,input{flex:1;font:inherit;font-size:14px;border:1px solid #d1d5db;border-radius:8px;padding:8px;
resize:none;color:#111827;background:#fff}
.primary{border:0;border-radius:8px;padding:8px 14px;background:var(--a);color:var(--t)}
.primary:disabled{opacity:.6;cursor:default}
.human{border:0;background:none;color:#1d4ed8;text-decoration:underline;font-size:12px;padding:0 14px 10px;
align-self:flex-start}
.handoff{display:flex;flex-direction:column;gap:8px;padding:12px 14px;border-top:1px solid #e5e7eb;background:#fff}
.handoff p{margin:0}
.handoff label{display:flex;flex-direction:column;gap:4px;font-size:13px}
.row{display:flex;gap:8px}
.ghost{border:1px solid #d1d5db;background:#fff;border-radius:8px;padding:8px 12px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
@media (max-width:480px){.w{bottom:12px;right:12px}.w.left{left:12px}
.panel{position:fixed;inset:0;width:auto;height:auto;border-radius:0}}`;
  // A constructed stylesheet: pages whose CSP forbids inline <style> still get the widget's look.
  let markup = "";
  if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
  } else markup = `<style>${css}</style>`;
  root.innerHTML = markup + `
<div class="w" part="widget">
 <button class="launcher" type="button" aria-expanded="false" aria-controls="sd-panel">
  <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16v12H7l-3 3z"/></svg><span></span></button>
 <section class="panel" id="sd-panel" role="dialog" aria-labelledby="sd-title" hidden>
  <header><h2 id="sd-title"></h2><button type="button" class="new"></button>
   <button type="button" class="close">✕</button></header>
  <div class="log" role="log" aria-live="polite"></div>
  <div class="banner" role="alert" hidden><span></span><button type="button" class="retry"></button></div>
  <button type="button" class="human" hidden></button>
  <form class="handoff" hidden><p class="intro"></p>
   <label><span class="el"></span><input type="email" name="email" required autocomplete="email"></label>
   <label><span class="nl"></span><textarea name="note" rows="2"></textarea></label>
   <div class="row"><button type="submit" class="primary hs"></button><button type="button" class="ghost hc"></button></div>
  </form>
  <form class="composer"><label class="sr" for="sd-q"></label>
   <textarea id="sd-q" rows="1" maxlength="8000"></textarea><button class="primary send" type="submit"></button></form>
 </section>
</div>`;
  const $ = (s) => root.querySelector(s);
  const wrap = $(".w"), launcher = $(".launcher"), panel = $(".panel"), log = $(".log");
  const banner = $(".banner"), composer = $(".composer"), input = $("#sd-q"), send = $(".send");
  const human = $(".human"), handoff = $(".handoff");

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text; // never innerHTML: answers are untrusted text
    return node;
  }

  function apply() {
    const c = config || {};
    Object.assign(S, c.strings || {});
    wrap.style.setProperty("--a", c.accent_color || "#2563eb");
    wrap.style.setProperty("--t", c.text_color || "#fff");
    wrap.classList.toggle("left", c.position === "left");
    launcher.querySelector("span").textContent = S.launcher;
    launcher.setAttribute("aria-label", S.launcher);
    $("#sd-title").textContent = c.title || "Support";
    $(".new").textContent = S.new_conversation;
    $(".close").setAttribute("aria-label", S.close);
    $(".close").title = S.close;
    $(".retry").textContent = S.retry;
    $(".sr").textContent = S.placeholder;
    input.placeholder = S.placeholder;
    send.textContent = S.send;
    human.textContent = S.talk_to_human;
    $(".intro").textContent = S.handoff_intro;
    $(".el").textContent = S.email_label;
    $(".nl").textContent = S.handoff_note_label;
    $(".hs").textContent = S.handoff_submit;
    $(".hc").textContent = S.handoff_cancel;
    showHuman();
  }

  function showHuman() {
    human.hidden = !(config && config.handoff && conversation) || !handoff.hidden;
  }

  function unavailable(on) {
    banner.hidden = !on;
    banner.querySelector("span").textContent = S.unavailable;
  }

  async function call(path, options) {
    // Network failures and 5xx: the service is unreachable. 4xx: the envelope's message.
    let res;
    try {
      res = await fetch(base + path, options);
    } catch (e) {
      unavailable(true);
      throw e;
    }
    if (res.status >= 500) {
      unavailable(true);
      throw new Error("unavailable");
    }
    unavailable(false);
    if (!res.ok) {
      let message = "";
      try { message = (await res.json()).error.message; } catch (e) { /* not our envelope */ }
      const error = new Error(message || "HTTP " + res.status);
      error.status = res.status;
      throw error;
    }
    return res;
  }

  function say(cls, text) {
    const m = el("div", "m " + cls, text);
    log.append(m);
    log.scrollTop = log.scrollHeight;
    return m;
  }

  function botMessage(text) {
    const m = say("b");
    const body = el("div", "t", text);
    m.append(body);
    return { m, body };
  }

  function finish(m, exchange, citations, rating) {
    if (citations && citations.length) {
      const list = el("ul", "src");
      list.setAttribute("aria-label", S.sources);
      for (const c of citations) {
        const item = el("li");
        const where = (c.heading_path || []).slice(-1)[0];
        const label = `[${c.marker}] ${c.title || c.document}` + (where ? ` › ${where}` : "") +
          (c.page ? `, p. ${c.page}` : "");
        if (c.chunk_id && exchange) {
          const a = el("a", null, label);
          a.href = `${base}/exchanges/${encodeURIComponent(exchange)}/sources/${encodeURIComponent(c.chunk_id)}`;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          item.append(a);
        } else item.textContent = label;
        list.append(item);
      }
      m.append(list);
    }
    if (!exchange) return;
    const bar = el("div", "fb");
    const status = el("span");
    status.setAttribute("aria-live", "polite");
    for (const [value, name] of [["up", S.helpful], ["down", S.not_helpful]]) {
      const b = el("button");
      b.innerHTML = THUMB; // our own constant markup, no visitor or bot text
      if (value === "down") b.firstChild.style.transform = "rotate(180deg)";
      b.type = "button";
      b.dataset.rating = value;
      b.setAttribute("aria-label", name);
      b.title = name;
      b.setAttribute("aria-pressed", String(rating === value));
      b.addEventListener("click", async () => {
        try {
          await call(`/exchanges/${encodeURIComponent(exchange)}/feedback`, {
            method: "POST", headers: { "content-type": "application/json" },
            body: JSON.stringify({ rating: value }),
          });
          for (const other of bar.querySelectorAll("button")) {
            other.setAttribute("aria-pressed", String(other === b));
          }
          status.textContent = S.thanks_for_feedback;
        } catch (e) { status.textContent = e.status ? e.message : ""; }
      });
      bar.append(b);
    }
    bar.append(status);
    m.append(bar);
  }

  function remember(id) {
    conversation = id;
    if (id) sessionStorage.setItem(stored, id);
    else sessionStorage.removeItem(stored);
    showHuman();
  }

  async function ask(text) {
    busy = true;
    send.disabled = true;
    say("u", text);
    const { m, body } = botMessage(S.thinking);
    m.setAttribute("aria-busy", "true");
    let answer = "", exchange = null, citations = null;
    try {
      const res = await call("/chat", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ message: text, conversation_id: conversation }),
      });
      remember(res.headers.get("X-Conversation-Id"));
      exchange = res.headers.get("X-Exchange-Id");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut).trim();
          buffer = buffer.slice(cut + 2);
          if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
          const event = JSON.parse(line.slice(6));
          if (event.error) throw Object.assign(new Error(event.error.message), { status: 502 });
          const delta = event.choices && event.choices[0] && event.choices[0].delta;
          if (delta && delta.content) {
            answer += delta.content;
            body.textContent = answer; // streamed: the answer grows as it is generated
            log.scrollTop = log.scrollHeight;
          }
          if (event.citations) citations = event.citations;
        }
      }
      finish(m, exchange, citations, null);
    } catch (e) {
      m.classList.add("err");
      body.textContent = e.status && e.message ? e.message : S.unavailable;
    } finally {
      m.removeAttribute("aria-busy");
      busy = false;
      send.disabled = false;
    }
  }

  async function restore() {
    log.textContent = "";
    if (config && config.greeting) botMessage(config.greeting);
    if (!conversation) return;
    try {
      const res = await call("/conversations/" + encodeURIComponent(conversation));
      for (const turn of (await res.json()).turns) {
        say("u", turn.question);
        const { m } = botMessage(turn.answer);
        if (turn.status === "error") m.classList.add("err");
        finish(m, turn.exchange_id, turn.citations, turn.feedback);
      }
    } catch (e) {
      if (e.status === 404) remember(null); // gone or not this bot's: start afresh
    }
  }

  async function load() {
    if (preview && preview.config) {
      config = preview.config; // the admin page's unsaved settings
    } else {
      try {
        config = await (await call("/config")).json();
      } catch (e) {
        config = null;
        console.warn("Shadowdesk widget: cannot load its settings (service down, or this page's " +
          "origin is not in the bot's allowed origins).", e.message);
      }
    }
    apply();
    await restore();
  }

  function open(state) {
    panel.hidden = !state;
    launcher.hidden = state;
    launcher.setAttribute("aria-expanded", String(state));
    if (state) {
      if (!config) load();
      input.focus();
      log.scrollTop = log.scrollHeight;
    } else launcher.focus();
  }

  launcher.addEventListener("click", () => open(true));
  $(".close").addEventListener("click", () => open(false));
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.preventDefault(); open(false); }
  });
  $(".retry").addEventListener("click", () => { unavailable(false); load(); });
  $(".new").addEventListener("click", () => { remember(null); restore(); input.focus(); });
  composer.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    input.value = "";
    ask(text);
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      composer.requestSubmit();
    }
  });
  human.addEventListener("click", () => {
    handoff.hidden = false;
    composer.hidden = true;
    showHuman();
    handoff.querySelector("input").focus();
  });
  function closeHandoff() {
    handoff.hidden = true;
    composer.hidden = false;
    showHuman();
    input.focus();
  }
  $(".hc").addEventListener("click", closeHandoff);
  handoff.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(handoff);
    try {
      const res = await call("/handoff", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({
          conversation_id: conversation, email: form.get("email"),
          message: form.get("note") || "", page_url: location.href.slice(0, 2000),
        }),
      });
      botMessage((await res.json()).message).m.classList.add("note");
      handoff.reset();
      closeHandoff();
    } catch (err) {
      botMessage(err.status ? err.message : S.unavailable).m.classList.add("err");
    }
  });

  function mount() {
    document.body.append(host);
    load();
    if (script.dataset.open != null) open(true);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
