// The byte order of two strings' UTF-8 encodings, without encoding them. User
// IDs are ordered by their UTF-8 bytes on the wire (LIST_USERS pages ascend in
// that order); comparing by allocating a Buffer per string made a listing of
// 2,000,000 users allocate millions of Buffers, garbage the collector then
// had to chase. UTF-8 keeps code point order, and UTF-16 code units keep it
// too except that surrogates (code points from U+10000) sort below U+E000-
// U+FFFF: lifting a surrogate above the BMP at the first difference gives the
// UTF-8 order. A lone surrogate (not valid UTF-16) is encoded by Buffer.from as
// U+FFFD; such strings are compared the slow way.

/** Negative, zero or positive as Buffer.compare(Buffer.from(a), Buffer.from(b)). */
export function utf8Compare(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length - b.length;
  const x = a.charCodeAt(i);
  const y = b.charCodeAt(i);
  const sx = x >= 0xd800 && x <= 0xdfff;
  const sy = y >= 0xd800 && y <= 0xdfff;
  if (sx || sy) {
    // a surrogate at the difference (or one shared before it) may be lone: only well-formed pairs take the fast way
    if (!wellFormed(a) || !wellFormed(b)) return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  }
  // (a lone surrogate before the difference is in both, the same code unit: the same bytes in both)
  return (sx ? x + 0x10000 : x) - (sy ? y + 0x10000 : y);
}

function wellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c > 0xdbff) return false;
    const d = s.charCodeAt(i + 1);
    if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
    i++;
  }
  return true;
}
