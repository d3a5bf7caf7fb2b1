/**
 * The value rules of a ticket's fields, each accepting exactly what its PostgreSQL column stores
 * as it is (so a stored row reads back equal to the message): text without NUL or lone
 * surrogates and within the index limits, times that exist and that PostgreSQL and JavaScript
 * read alike, money in whole cents; plus `printable` for quoting input safely.
 * @module
 */

/** Most characters (code points) of a theater, movie or name. */
export const MAX_TEXT_CHARS = 200;
/**
 * Most UTF-8 bytes of a theater, movie or name: a seat's key (showtime, seat, theater, movie)
 * stays far below PostgreSQL's btree entry limit (~2700 bytes), whatever the script.
 */
export const MAX_TEXT_BYTES = 600;
/** Most UTF-8 bytes of an e-mail address (RFC 5321's 254). */
export const MAX_EMAIL_BYTES = 254;
/** Most digits after the second: PostgreSQL keeps microseconds and rounds the rest. */
export const MAX_FRACTION_DIGITS = 6;
/** Largest price, in cents, that a numeric(12,2) column holds (9999999999.99). */
export const MAX_PRICE_CENTS = 999_999_999_999;

// the control characters are what this pattern is for
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f\ud800-\udfff]/;

function escapeUnit(code: number): string {
  return `\\u${code.toString(16).padStart(4, "0")}`;
}

/**
 * Message text made safe to quote in a reject detail, which is stored in a text column and
 * printed: NUL and the other C0 controls, DEL and lone surrogates become JSON-style `\u0000`, and
 * the text is cut at `max` characters (ending in `…`), never inside a surrogate pair. Printable
 * text comes back unchanged, so applying it twice with the same `max` changes nothing.
 */
export function printable(text: string, max = 200): string {
  if (text.length <= max && !UNPRINTABLE.test(text)) return text;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    let piece: string;
    if (code < 0x20 || code === 0x7f) piece = escapeUnit(code);
    else if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1); // NaN past the end
      if (next >= 0xdc00 && next <= 0xdfff) piece = text.slice(i, ++i + 1);
      else piece = escapeUnit(code);
    } else if (code >= 0xdc00 && code <= 0xdfff) piece = escapeUnit(code);
    else piece = text[i]!;
    if (out.length + piece.length > max) return `${out}…`;
    out += piece;
  }
  return out;
}

/** Why PostgreSQL could not store `value` faithfully in a text column, if it could not. */
export function textProblem(value: string): string | undefined {
  if (value.includes("\u0000")) {
    return "contains a NUL character (\\u0000), which PostgreSQL text cannot hold";
  }
  if (!value.isWellFormed()) {
    return "contains a lone UTF-16 surrogate (such as \\ud800), which is not Unicode text";
  }
  return undefined;
}

/** Code points and UTF-8 bytes of well-formed text. */
export function measure(value: string): { chars: number; bytes: number } {
  let chars = 0, bytes = 0;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    chars++;
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) bytes += 4, i++; // a pair: the text is well formed
    else bytes += 3;
  }
  return { chars, bytes };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/** Days from 1970-01-01 to a date of the proleptic Gregorian calendar (as PostgreSQL and JS). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yearOfEra = y - era * 400;
  const dayOfYear = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) +
    dayOfYear;
  return era * 146097 + dayOfEra - 719468;
}

/** The number written by `count` ASCII digits of `text` at `at`, or -1 if one is not a digit. */
function digitsAt(text: string, at: number, count: number): number {
  let n = 0;
  for (let i = at; i < at + count; i++) {
    const digit = text.charCodeAt(i) - 48; // NaN past the end
    if (!(digit >= 0 && digit <= 9)) return -1;
    n = n * 10 + digit;
  }
  return n;
}

const TIME_SHAPE = "must be an ISO 8601 time with a zone such as 2026-05-01T19:30:00Z";
const two = (n: number) => String(n).padStart(2, "0");

/**
 * Reads an ISO 8601 time with a zone (`YYYY-MM-DDTHH:MM[:SS[.fraction]]` then `Z`, `±HH:MM` or
 * `±HHMM`), checking each field against the calendar and the ranges PostgreSQL and JavaScript
 * both read the same way: years 0001-9999, days that exist, hours 00-23, minutes and seconds
 * 00-59, at most 6 fraction digits, offsets within ±15:59. Gives the instant (milliseconds, plus
 * the microseconds below them) or what is wrong. Reads by character codes: it runs twice for
 * every message.
 */
export function readIsoTime(value: string): { ms: number; micros: number } | string {
  const at = (i: number) => value.charCodeAt(i);
  // "-" 45, ":" 58, "T" 84, "." 46, "Z" 90, "+" 43
  if (at(4) !== 45 || at(7) !== 45 || at(10) !== 84 || at(13) !== 58) return TIME_SHAPE;
  const year = digitsAt(value, 0, 4), month = digitsAt(value, 5, 2), day = digitsAt(value, 8, 2);
  const hour = digitsAt(value, 11, 2), minute = digitsAt(value, 14, 2);
  if (year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0) return TIME_SHAPE;
  let i = 16, second = 0, micros = 0, fractionDigits = 0;
  if (at(i) === 58) {
    second = digitsAt(value, i + 1, 2);
    if (second < 0) return TIME_SHAPE;
    i += 3;
    if (at(i) === 46) {
      i++;
      for (; at(i) >= 48 && at(i) <= 57; i++, fractionDigits++) {
        if (fractionDigits < 6) micros = micros * 10 + at(i) - 48;
      }
      if (fractionDigits === 0) return TIME_SHAPE;
      for (let k = fractionDigits; k < 6; k++) micros *= 10;
    }
  }
  let offset = 0, zone = "";
  if (at(i) === 90) i++;
  else if (at(i) === 43 || at(i) === 45) {
    const zoneHours = digitsAt(value, i + 1, 2);
    const colon = at(i + 3) === 58 ? 1 : 0;
    const zoneMinutes = digitsAt(value, i + 3 + colon, 2);
    if (zoneHours < 0 || zoneMinutes < 0) return TIME_SHAPE;
    zone = `${value[i]}${two(zoneHours)}:${two(zoneMinutes)}`;
    offset = (at(i) === 45 ? -1 : 1) * (zoneHours * 60 + zoneMinutes);
    if (zoneHours > 15 || zoneMinutes > 59) {
      return `has zone offset ${zone}; PostgreSQL takes -15:59 to +15:59`;
    }
    i += 5 + colon;
  } else return TIME_SHAPE;
  if (i !== value.length) return TIME_SHAPE;
  if (fractionDigits > MAX_FRACTION_DIGITS) {
    return `has ${fractionDigits} digits after the second; at most ${MAX_FRACTION_DIGITS} ` +
      "(PostgreSQL keeps microseconds)";
  }
  if (year < 1) return "has year 0000, which does not exist (1 BC is followed by AD 1)";
  if (month < 1 || month > 12) return `has month ${two(month)}; months are 01-12`;
  const days = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > days) {
    return `has day ${two(day)}, but ${value.slice(0, 7)} has ${days} days`;
  }
  if (hour > 23) return `has hour ${two(hour)}; hours are 00-23`;
  if (minute > 59) return `has minute ${two(minute)}; minutes are 00-59`;
  if (second > 59) return `has second ${two(second)}; seconds are 00-59`;
  const ms = (daysFromCivil(year, month, day) * 1440 + hour * 60 + minute - offset) * 60_000 +
    second * 1000 + Math.floor(micros / 1000);
  // a safety net: every reader of a ticket's time (sink, verify) uses Date.parse
  if (Date.parse(value) !== ms) return "is read differently by JavaScript's Date.parse";
  return { ms, micros: micros % 1000 };
}

/**
 * Microseconds since 1970-01-01T00:00:00Z of a time the parser accepts (what a timestamptz column
 * stores for it), or undefined when the parser refuses the time.
 */
export function timeMicros(value: string): bigint | undefined {
  const time = readIsoTime(value);
  return typeof time === "string" ? undefined : BigInt(time.ms) * 1000n + BigInt(time.micros);
}

/**
 * An amount in whole cents, the unit a numeric(12,2) column stores: the one rule by which the
 * pipeline compares money (a message's float with a stored row's).
 */
export function moneyCents(amount: number): number {
  return Math.round(amount * 100);
}

/** True when two amounts are the same number of cents (see {@linkcode moneyCents}). */
export function sameMoney(a: number, b: number): boolean {
  return moneyCents(a) === moneyCents(b);
}

/**
 * True when `amount` is a whole number of cents up to float noise (0.1 + 0.2 is 30 cents), so
 * numeric(12,2) stores what the message means instead of rounding it to another amount.
 */
export function isWholeCents(amount: number): boolean {
  const cents = amount * 100;
  const whole = Math.round(cents);
  // the noise of a float grows with its size: about 1e-4 cents near the column's largest value
  return Math.abs(cents - whole) <= 1e-6 + Math.abs(whole) * 1e-15;
}
