/** 17179869184 -> "16 GiB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** An RFC 3339 time as "3 min ago (14:02:11)"; `<Ago>` (clock.tsx) keeps it ticking. */
export function formatSince(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  const ago = s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} d ago`;
  return `${ago} (${new Date(t).toLocaleString()})`;
}

/** A container or host state -> a Mantine colour. */
export function stateColor(state: string): string {
  switch (state) {
    case "running":
    case "active":
      return "green";
    case "pulling":
      return "blue";
    case "pending":
    case "created":
    case "restarting":
      return "yellow";
    case "stopped":
    case "exited":
      return "gray";
    default:
      return "red";
  }
}

/** `{host_port, container_port, protocol}` -> "8080:80/tcp". */
export function formatPort(p: { host_port: number | null; container_port: number; protocol: string }): string {
  return `${p.host_port ? `${p.host_port}:` : ""}${p.container_port}${p.protocol && p.protocol !== "tcp" ? `/${p.protocol}` : ""}`;
}

/**
 * Splits a command line as a POSIX shell would for simple cases: whitespace separates words,
 * single quotes keep everything, double quotes keep everything but `\"` and `\\`.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === "\\" && (line[i + 1] === '"' || line[i + 1] === "\\")) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new Error(`unclosed ${quote} quote`);
  if (inWord) words.push(cur);
  return words;
}

/** "a, b c" -> ["a", "b", "c"]: list fields typed on one line. */
export function splitList(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** One entry per non-empty line (env vars, rules: values may contain spaces and commas). */
export function splitLines(text: string): string[] {
  return text
    .split("\n")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** An argument as a shell user would type it: quoted when it has spaces or shell characters. */
export function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
