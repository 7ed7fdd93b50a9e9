// The scenarios in fixtures/: generator specs (fixtures/scenarios.json: a seed
// and parameters, for scenarios too big to commit as recordings) and recorded
// sessions (fixtures/*.frames.jsonl.gz, made by running a generated scenario
// through the recorder). Re-record with:
//   npx tsx bench/fixtures.ts record [name...]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command } from '../src/codec/index.js';
import { readRecording, scenarioFromRecording, writeRecording } from './recorder.js';
import { replay, type Speed } from './replay.js';
import { generate, type GeneratorSpec, type Scenario } from './scenario.js';
import { startBenchSite } from './site.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface ScenarioEntry {
  spec: GeneratorSpec;
  /** what the scenario is for */
  description: string;
  /** recorded into fixtures/<name>.frames.jsonl.gz at this replay speed */
  record?: { speed: Speed };
}

export function scenarioSpecs(): Record<string, ScenarioEntry> {
  return JSON.parse(readFileSync(join(FIXTURES, 'scenarios.json'), 'utf8')).scenarios;
}

export function recordingFile(name: string): string {
  return join(FIXTURES, `${name}.frames.jsonl.gz`);
}

/** Every recorded scenario in fixtures/, read back as scenarios (with the speed they were recorded at). */
export function recordedScenarios(): { name: string; file: string; bytes: number; speed: Speed; scenario: Scenario }[] {
  return readdirSync(FIXTURES)
    .filter((f) => f.endsWith('.frames.jsonl.gz'))
    .sort()
    .map((f) => {
      const file = join(FIXTURES, f);
      const { header, lines } = readRecording(file);
      const name = f.replace(/\.frames\.jsonl\.gz$/, '');
      // played back as recorded: a recording made at maximum speed replays at 1x (its own timing,
      // which holds the waits for convergence its generator had); one made at Nx replays at Nx
      const speed: Speed = header.speed;
      return { name, file, bytes: statSync(file).size, speed, scenario: scenarioFromRecording(header, lines, name) };
    });
}

/** Runs a generated scenario through the recorder and writes its fixture. Returns the file's size. */
export async function recordScenario(name: string, entry: ScenarioEntry, file = recordingFile(name)): Promise<{ bytes: number; frames: number; converged: boolean }> {
  const scenario = generate(entry.spec);
  const speed = entry.record?.speed ?? 'max';
  const site = await startBenchSite({ terminals: scenario.terminals, record: true });
  try {
    const rec = site.recorder!;
    const t0 = rec.lines.length;
    const r = await replay({ scenario, host: site.host, daemon: site.daemon, db: site.db, speed, timeoutMs: 120_000 });
    // the recording starts with the replay: the sessions' first contact before it is left out, except
    // what the reader needs (session openings, and where each session's subscription started)
    const opens = rec.lines.slice(0, t0).filter((l) => ('ev' in l && l.ev === 'open') || ('c' in l && l.c === Command.SUBSCRIBE_LOG && l.d === 'T'));
    const lines = [...opens, ...rec.lines.slice(t0)];
    const header = rec.header({
      scenario: name,
      title: scenario.title,
      terminals: scenario.terminals,
      speed: speed === 'max' ? 1 : speed,
      replay: speed === 'max' ? 'max' : 'timed',
      generator: entry.spec,
    });
    const bytes = writeRecording(file, header, lines);
    return { bytes, frames: lines.length, converged: r.converged };
  } finally {
    await site.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [cmd, ...names] = process.argv.slice(2);
  if (cmd !== 'record') {
    process.stderr.write('usage: npx tsx bench/fixtures.ts record [name...]\n');
    process.exit(2);
  }
  const specs = scenarioSpecs();
  for (const [name, entry] of Object.entries(specs)) {
    if (!entry.record || (names.length && !names.includes(name))) continue;
    const r = await recordScenario(name, entry);
    process.stdout.write(`${name}: ${r.frames} lines, ${(r.bytes / 1024).toFixed(1)} KiB${r.converged ? '' : ' (did NOT converge)'}\n`);
  }
}
