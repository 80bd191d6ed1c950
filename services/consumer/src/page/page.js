// portbound's page, enhanced: links made without a reload, a copy button, the attached backend
// kept live, and the links made in this browser. The page works without this script; it only
// ever writes text into the page (textContent), never markup.
"use strict";

(() => {
  const STORE = "portbound.links";
  const KEEP = 50;             // links remembered in this browser
  const SHOW_CLICKS_FOR = 20;  // the newest ones whose clicks are fetched
  const STATUS_EVERY_MS = 3000;
  const CLICKS_EVERY = 4;      // refresh clicks every 4th status check

  const $ = (id) => document.getElementById(id);
  const form = $("shorten");
  const result = $("result");
  const fields = { "/url": $("url"), "/code": $("code") };
  const errors = { "/url": $("url-error"), "/code": $("code-error"), form: $("form-error") };

  // The same sentence the server writes for a problem: capitalised, ended, when to retry.
  function sentence(detail, retryAfter) {
    let text = detail || "Something went wrong.";
    text = text.charAt(0).toUpperCase() + text.slice(1);
    if (!/[.!?]$/.test(text)) text += ".";
    if (retryAfter) text += ` Try again in ${retryAfter} s.`;
    return text;
  }

  function clearErrors() {
    for (const [pointer, element] of Object.entries(errors)) {
      element.textContent = "";
      if (fields[pointer]) fields[pointer].removeAttribute("aria-invalid");
    }
  }

  function showError(pointer, text) {
    const where = errors[pointer] ? pointer : "form";
    errors[where].textContent = text;
    if (fields[where]) {
      fields[where].setAttribute("aria-invalid", "true");
      fields[where].focus();
    }
  }

  function element(tag, text, attributes = {}) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function copyButton(text) {
    const button = element("button", "Copy", { type: "button", class: "secondary" });
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        // No clipboard here (plain http on another host): select the link for the person.
        const selection = window.getSelection();
        const range = document.createRange();
        range.selectNodeContents($("short-link"));
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
    return button;
  }

  function showLink(link) {
    const line = element("p", "Your short link: ");
    line.append(element("a", link.short_url, { id: "short-link", href: link.short_url }));
    line.append(copyButton(link.short_url));
    const target = element("p", "to ", { class: "target" });
    target.append(element("span", link.url));
    result.replaceChildren(line, target);
  }

  // The links made in this browser.
  function remembered() {
    try {
      const list = JSON.parse(localStorage.getItem(STORE) || "[]");
      return Array.isArray(list)
        ? list.filter((l) => l && typeof l.code === "string" && typeof l.short_url === "string")
        : [];
    } catch {
      return [];
    }
  }

  function remember(link) {
    const { code, url, short_url, created_at } = link;
    const list = remembered().filter((l) => l.short_url !== short_url);
    list.unshift({ code, url, short_url, created_at });
    try {
      localStorage.setItem(STORE, JSON.stringify(list.slice(0, KEEP)));
    } catch {
      // Storage full or refused: the list is a convenience, the link itself is made.
    }
    showRemembered();
  }

  function showRemembered() {
    const list = remembered();
    const table = $("mine");
    $("mine-empty").textContent = list.length ? "" : "None yet: the links you make here are listed here.";
    table.hidden = list.length === 0;
    const rows = list.map((link) => {
      const row = element("tr");
      const short = element("td");
      short.append(element("a", link.short_url, { href: link.short_url }));
      row.append(short, element("td", link.url), element("td", "…", { class: "clicks", "data-code": link.code }));
      return row;
    });
    table.tBodies[0].replaceChildren(...rows);
    refreshClicks();
  }

  async function refreshClicks() {
    const cells = [...document.querySelectorAll("#mine td.clicks")].slice(0, SHOW_CLICKS_FOR);
    await Promise.all(cells.map(async (cell) => {
      try {
        const response = await fetch(`/api/links/${encodeURIComponent(cell.dataset.code)}`, { cache: "no-store" });
        if (response.ok) {
          cell.textContent = String((await response.json()).clicks);
        } else if (response.status === 404) {
          cell.textContent = "not on this backend";
        } else {
          cell.textContent = "unknown now";
        }
      } catch {
        cell.textContent = "unknown now";
      }
    }));
  }

  // The attached backend, checked every few seconds.
  function setText(id, text) {
    const node = $(id);
    if (node.textContent !== text) node.textContent = text;
  }

  async function refreshStatus() {
    let backend;
    try {
      const response = await fetch("/api/status", { cache: "no-store" });
      backend = (await response.json()).upstream;
    } catch {
      setText("backend-state", "unknown: the shortener itself is not answering");
      $("backend-state").className = "down";
      return;
    }
    setText("backend-kind", backend.kind);
    setText("backend-instance", backend.instance || "unknown");
    setText("backend-url", backend.url);
    setText("backend-state", backend.reachable ? "reachable" : `unreachable: ${backend.error}`);
    $("backend-state").className = backend.reachable ? "up" : "down";
    setText("backend-latency", backend.latency_ms == null ? "none" : `${backend.latency_ms} ms`);
    setText("backend-circuit", backend.circuit);
    setText("backend-checked", `Checked every ${STATUS_EVERY_MS / 1000} s; last at ${new Date().toLocaleTimeString()}.`);
  }

  async function submit(event) {
    event.preventDefault();
    clearErrors();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const body = { url: fields["/url"].value.trim() };
    const code = fields["/code"].value.trim();
    if (code) body.code = code;
    try {
      const response = await fetch("/api/links", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify(body),
      });
      if (response.status === 201) {
        const link = await response.json();
        showLink(link);
        remember(link);
        form.reset();
      } else {
        const problem = await response.json().catch(() => ({}));
        showError(problem.pointer, sentence(problem.detail, response.headers.get("retry-after")));
        result.replaceChildren();
      }
    } catch {
      showError("form", "The shortener did not answer; check the connection and try again.");
    } finally {
      button.disabled = false;
    }
  }

  // A link the server made from a form post without this script is remembered too.
  if (result.dataset.code) {
    const { code, url, shortUrl, createdAt } = result.dataset;
    remember({ code, url, short_url: shortUrl, created_at: createdAt });
    result.querySelector("p").append(copyButton(shortUrl));
  } else {
    showRemembered();
  }
  form.addEventListener("submit", submit);
  let checks = 0;
  refreshStatus();
  setInterval(() => {
    refreshStatus();
    checks += 1;
    if (checks % CLICKS_EVERY === 0) refreshClicks();
  }, STATUS_EVERY_MS);
})();
