// Language state and translation. Bahasa Indonesia first; English switchable. Text lives
// in ./i18n/id.ts and ./i18n/en.ts; error codes from Rust map to `err.<code>`.
import { id } from "./i18n/id";
import { en } from "./i18n/en";

export type Lang = "id" | "en";
const dicts: Record<Lang, Record<string, string>> = { id, en };

export const i18n = $state({ lang: (localStorage.getItem("kunjung.lang") as Lang) || "id" });

export function setLang(l: Lang) {
  i18n.lang = l;
  localStorage.setItem("kunjung.lang", l);
  document.documentElement.lang = l;
}

/** Translates `key`, replacing `{name}` with params. */
export function t(key: string, params: Record<string, string | number> = {}): string {
  // English singulars ("1 referral") live under `key.one`; Indonesian needs none.
  const one = params.n !== undefined && Number(params.n) === 1 ? dicts[i18n.lang][`${key}.one`] : undefined;
  const s = one ?? dicts[i18n.lang][key] ?? dicts.id[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? `{${k}}`));
}

/** A user-facing message for an error from the API. */
export function errorText(e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code && dicts[i18n.lang][`err.${err.code}`]) {
    const base = t(`err.${err.code}`);
    return err.code === "invalid" && err.message ? `${base}: ${err.message}` : base;
  }
  return err?.message ?? String(e);
}

/** Picks the label in the current language from a Rust item with label_id/label_en. */
export function label(x: { label_id: string; label_en: string }): string {
  return i18n.lang === "en" ? x.label_en : x.label_id;
}

function locale() {
  return i18n.lang === "en" ? "en-GB" : "id-ID";
}

/** `YYYY-MM-DD` → "24 Nov 2026" (id-ID style). */
export function fmtDate(d: string | null | undefined): string {
  if (!d) return "—";
  const [y, m, day] = d.split("-").map(Number);
  return new Intl.DateTimeFormat(locale(), { day: "numeric", month: "short", year: "numeric" }).format(
    new Date(y, m - 1, day),
  );
}

export function fmtTime(ms: number): string {
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit" }).format(new Date(ms));
}

export function fmtNum(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined) return "—";
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits }).format(n);
}

/** Age from a birth date, as "2 th 3 bl" / "2 y 3 m". */
export function fmtAge(birth: string | null, today: string): string {
  if (!birth) return "—";
  const [by, bm, bd] = birth.split("-").map(Number);
  const [ty, tm, td] = today.split("-").map(Number);
  let months = (ty - by) * 12 + (tm - bm) - (td < bd ? 1 : 0);
  if (months < 0) months = 0;
  const y = Math.floor(months / 12);
  const m = months % 12;
  if (y >= 5) return t("age.years", { y });
  return y > 0 ? t("age.ym", { y, m }) : t("age.months", { m });
}

export function todayIso(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

/** `YYYY-MM` of today. */
export function thisMonth(): string {
  return todayIso().slice(0, 7);
}

/** `YYYY-MM` moved by `n` months. */
export function addMonths(ym: string, n: number): string {
  const [y, m] = ym.split("-").map(Number);
  const d = new Date(y, m - 1 + n, 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

/** `YYYY-MM` → "November 2026" (or "Nov" with `short`). */
export function fmtMonth(ym: string, short = false): string {
  const [y, m] = ym.split("-").map(Number);
  const opts: Intl.DateTimeFormatOptions = short ? { month: "short" } : { month: "long", year: "numeric" };
  return new Intl.DateTimeFormat(locale(), opts).format(new Date(y, m - 1, 1));
}

/** ms since the epoch → "24 Nov 2026 14.05" in the user's language. */
export function fmtDateTime(ms: number): string {
  return new Intl.DateTimeFormat(locale(), {
    day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
  }).format(new Date(ms));
}
