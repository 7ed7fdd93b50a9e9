// Draws a run as an SVG (no dependency): users fully converged (% of users
// every terminal holds) and the outbox depth over time, with the device-bound
// limit and the convergence time marked.
import type { TimelinePoint } from './replay.js';

export interface ChartOptions {
  title: string;
  subtitle?: string;
  /** vertical markers, ms */
  markers?: { t: number; label: string; color: string }[];
}

const W = 900;
const PANEL_H = 220;
const M = { left: 70, right: 30, top: 80, gap: 50, bottom: 45 };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** "nice" tick step for a range */
function niceStep(max: number, ticks = 5): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function fmt(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(v % 1e6 ? 1 : 0)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(v % 1e3 ? 1 : 0)}k`;
  return String(Math.round(v * 100) / 100);
}

function panel(
  y0: number,
  points: { t: number; v: number }[],
  tMax: number,
  vMax: number,
  label: string,
  color: string,
  markers: ChartOptions['markers'],
): string {
  const x = (t: number) => M.left + ((W - M.left - M.right) * t) / tMax;
  const y = (v: number) => y0 + PANEL_H - (PANEL_H * v) / (vMax || 1);
  const out: string[] = [];
  out.push(`<rect x="${M.left}" y="${y0}" width="${W - M.left - M.right}" height="${PANEL_H}" fill="#fafafa" stroke="#ccc"/>`);
  const vStep = niceStep(vMax);
  for (let v = 0; v <= vMax + 1e-9; v += vStep) {
    out.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 8}" y="${y(v) + 4}" text-anchor="end" font-size="11" fill="#555">${fmt(v)}</text>`);
  }
  const tStep = niceStep(tMax / 1000, 8) * 1000;
  for (let t = 0; t <= tMax + 1e-9; t += tStep) {
    out.push(`<line x1="${x(t)}" x2="${x(t)}" y1="${y0 + PANEL_H}" y2="${y0 + PANEL_H + 4}" stroke="#999"/>`);
    out.push(`<text x="${x(t)}" y="${y0 + PANEL_H + 17}" text-anchor="middle" font-size="11" fill="#555">${fmt(t / 1000)} s</text>`);
  }
  out.push(`<text x="${M.left}" y="${y0 - 8}" font-size="13" font-weight="bold" fill="#333">${esc(label)}</text>`);
  for (const m of markers ?? []) {
    if (m.t > tMax) continue;
    out.push(`<line x1="${x(m.t)}" x2="${x(m.t)}" y1="${y0}" y2="${y0 + PANEL_H}" stroke="${m.color}" stroke-dasharray="5,4"/>`);
  }
  if (points.length) {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
  }
  return out.join('\n');
}

export function renderChart(timeline: TimelinePoint[], o: ChartOptions): string {
  const markers = o.markers ?? [];
  const tMax = Math.max(1000, ...timeline.map((p) => p.t), ...markers.map((m) => m.t)) * 1.02;
  const H = M.top + 2 * PANEL_H + M.gap + M.bottom + 30;
  const conv = [{ t: 0, v: 0 }, ...timeline.map((p) => ({ t: p.t, v: p.convergedPct }))];
  const outbox = timeline.map((p) => ({ t: p.t, v: p.outbox }));
  const outboxMax = niceStep(Math.max(1, ...outbox.map((p) => p.v)), 5) * 5;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="24" font-size="16" font-weight="bold" fill="#111">${esc(o.title)}</text>`,
    o.subtitle ? `<text x="${M.left}" y="42" font-size="12" fill="#555">${esc(o.subtitle)}</text>` : '',
    panel(M.top, conv, tMax, 100, 'Users held by every terminal (%)', '#1f77b4', markers),
    panel(M.top + PANEL_H + M.gap, outbox, tMax, outboxMax, 'Outbox depth (pushes waiting, one per terminal and user)', '#d62728', markers),
  ];
  // legend for the markers
  let lx = M.left;
  const ly = H - 12;
  for (const m of markers) {
    parts.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${m.color}" stroke-dasharray="5,4" stroke-width="2"/>`);
    parts.push(`<text x="${lx + 28}" y="${ly}" font-size="11" fill="#333">${esc(m.label)}</text>`);
    lx += 40 + m.label.length * 6.2;
  }
  parts.push('</svg>');
  return parts.filter(Boolean).join('\n');
}
