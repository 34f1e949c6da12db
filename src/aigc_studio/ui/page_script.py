"""The page's own script, in <head>: the language switch, toast titles in the page's language,
A1111's keyboard shortcuts on the Images tab, and the label line on text copied from generated items."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from .i18n import LANGUAGES, text
from .text_labels import COPY_SCRIPT


def page_script() -> str:
    """A <head> script with the page's language switch (the saved choice, else the browser's language),
    the toast titles in the page's language, and A1111's keyboard shortcuts on the Images tab.

    Gradio's frontend translates I18n keys through its svelte-i18n locale, which its settings panel
    changes with ``changeLocale`` exported by its core module; that module is imported here by its
    built file name, read from the installed Gradio (pinned in pyproject). Gradio writes a toast's type
    ("Error", "Info") as its title, untranslated; the observer below puts the title in the page's language.
    """
    assets = Path(gr.__file__).parent / "templates" / "frontend" / "assets"
    cores = sorted(p.name for p in assets.glob("core-*.js"))
    if len(cores) != 1:
        raise RuntimeError(f"expected one core-*.js in {assets}, found {cores}: Gradio changed its build")
    codes = [code for _, code in LANGUAGES]
    kinds = ("error", "warning", "info", "success")
    titles = {code: {kind: text(code, f"toast_{kind}") for kind in kinds} for code in codes}
    return f"""<script>
(() => {{
  const SUPPORTED = {json.dumps(codes)};
  const TOAST_TITLES = {json.dumps(titles, ensure_ascii=False)};
  const core = () => import(new URL("assets/{cores[0]}", document.baseURI).href);
  window.aigcInitialLocale = () => {{
    let lang = localStorage.getItem("aigc-lang");
    if (!SUPPORTED.includes(lang)) {{
      const browser = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
      lang = browser.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
    }}
    window.aigcSetLocale(lang, false);
    return lang;
  }};
  window.aigcSetLocale = (lang, remember) => {{
    if (remember) localStorage.setItem("aigc-lang", lang);
    document.documentElement.lang = lang;
    translateToasts();
    return core().then((m) => m.changeLocale(lang)).catch((e) => console.error("language switch failed", e));
  }};
  function translateToasts() {{
    const titles = TOAST_TITLES[document.documentElement.lang] || TOAST_TITLES.en;
    for (const title of document.querySelectorAll(".toast-title")) {{
      const kind = ["error", "warning", "info", "success"].find((k) => title.classList.contains(k));
      const node = [...title.childNodes].find((n) => n.nodeType === Node.TEXT_NODE && n.data.trim());
      if (kind && node && node.data.trim() !== titles[kind]) node.data = titles[kind] + " ";
    }}
  }}
  let pending = false;
  new MutationObserver(() => {{
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {{ pending = false; translateToasts(); }});
  }}).observe(document.documentElement, {{ childList: true, subtree: true }});
  // A1111's shortcuts while the Images tab shows: Ctrl+Enter (Cmd+Enter) generates, Alt+Enter skips.
  document.addEventListener("keydown", (e) => {{
    if (e.key !== "Enter" || e.isComposing) return;
    const generate = document.getElementById("img-generate");
    if (!generate || !generate.offsetParent) return;
    if (e.ctrlKey || e.metaKey) {{
      e.preventDefault();
      generate.click();
    }} else if (e.altKey) {{
      e.preventDefault();
      document.getElementById("img-skip")?.click();
    }}
  }}, true);
{COPY_SCRIPT}
}})();
</script>"""
