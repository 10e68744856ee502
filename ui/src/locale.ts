// Libraries format numbers with `navigator.language` as soon as they load (uPlot does). Under a
// POSIX locale (LANG=C, as in minimal or headless sessions) WebKit reports the language "C",
// which Intl rejects with a RangeError, and the whole UI would fail to start. Such a language
// is replaced by the engine's own default before anything else is imported.
function usable(tag: string): boolean {
  try {
    new Intl.NumberFormat(tag);
    return true;
  } catch {
    return false;
  }
}

if (typeof navigator !== "undefined" && !usable(navigator.language)) {
  const fallback = new Intl.NumberFormat().resolvedOptions().locale;
  Object.defineProperty(navigator, "language", { value: fallback, configurable: true });
  Object.defineProperty(navigator, "languages", { value: [fallback], configurable: true });
}
