/**
 * A job report as one self-contained HTML page: plain SVG and inline CSS, no script and no
 * fetch, so it opens anywhere (a mail attachment, an air-gapped laptop). A timeline with one
 * row per worker and one bar per task (as Lithops' plot draws calls), throughput over time,
 * the cost, the stragglers, and for a histogram the result itself.
 */
import type { JobReport } from "./jobReport.js";

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const seconds = (ms: number): string => (ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${(ms / 1000).toFixed(1)} s`);
const usd = (x: number): string =>
  Number.isNaN(x) ? "unpriced (not in the price table)" : x === 0 ? "$0" : x < 0.01 ? `$${x.toFixed(6)}` : `$${x.toFixed(2)}`;
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

const WIDTH = 960;

/** The opening tag of a chart of this page's width. */
const svg = (cls: string, height: number, label: string): string =>
  `<svg class="${cls}" viewBox="0 0 ${WIDTH} ${height}" width="${WIDTH}" height="${height}" role="img" aria-label="${label}">`;
const LABEL = 190;
/** Height of one lane of a worker's row: a worker running N tasks at once has N lanes. */
const LANE = 14;

/** Tasks of one worker in lanes, so that tasks it ran at once (its concurrency) do not overlap. */
const lanesOf = (tasks: readonly JobReport["tasks"][number][]): { task: JobReport["tasks"][number]; lane: number }[] => {
  const ends: number[] = [];
  return [...tasks]
    .sort((a, b) => a.start - b.start || a.index - b.index)
    .map((task) => {
      let lane = ends.findIndex((end) => end <= task.start);
      if (lane < 0) lane = ends.push(0) - 1;
      ends[lane] = task.start + task.ms;
      return { task, lane };
    });
};

const timeline = (r: JobReport): string => {
  let span = 1;
  for (const t of r.tasks) span = Math.max(span, t.start + t.ms);
  const x = (ms: number): number => LABEL + (ms / span) * (WIDTH - LABEL - 16);
  const stragglers = new Set(r.stragglers.map((s) => s.index));
  let y = 0;
  const rows = r.workers
    .map((w) => {
      const placed = lanesOf(r.tasks.filter((t) => t.worker === w.worker));
      const lanes = Math.max(1, ...placed.map((p) => p.lane + 1));
      const top = y;
      y += lanes * LANE + 8;
      const bars = placed
        .map(({ task: t, lane }) => {
          const left = x(t.start);
          const width = Math.max(1, x(t.start + t.ms) - left);
          const cls = `task ${t.on}${stragglers.has(t.index) ? " straggler" : ""}`;
          return (
            `<rect class="${cls}" data-index="${t.index}" x="${left.toFixed(1)}" y="${top + 4 + lane * LANE}" ` +
            `width="${width.toFixed(1)}" ` +
            `height="${LANE - 3}"><title>chunk ${t.index}: ${seconds(t.ms)}, ${mb(t.bytes)}, from ${seconds(t.start)}</title></rect>`
          );
        })
        .join("");
      const label = w.worker.length > 26 ? `…${w.worker.slice(-25)}` : w.worker;
      return (
        `<g class="worker-row" data-worker="${esc(w.worker)}"><text x="4" y="${top + 15}">${esc(label)}</text>` +
        `<line x1="${LABEL}" x2="${WIDTH - 10}" y1="${y - 2}" y2="${y - 2}"/>${bars}</g>`
      );
    })
    .join("");
  const height = y + 24;
  const ticks = Array.from({ length: 6 }, (_, i) => (span * i) / 5)
    .map(
      (ms, i) => `<text class="tick" x="${x(ms).toFixed(1)}" y="${height - 6}"${i === 5 ? ' text-anchor="end"' : ""}>${seconds(ms)}</text>`,
    )
    .join("");
  return `${svg("timeline", height, "tasks per worker over time")}${rows}${ticks}</svg>`;
};

const throughput = (r: JobReport): string => {
  const h = 140;
  const peak = Math.max(1, ...r.throughput.map((p) => p.bytesPerSecond));
  const last = Math.max(1, r.throughput.at(-1)?.at ?? 1);
  const pts = r.throughput
    .map((p) => `${(40 + (p.at / last) * (WIDTH - 60)).toFixed(1)},${(h - 20 - (p.bytesPerSecond / peak) * (h - 40)).toFixed(1)}`)
    .join(" ");
  return (
    `${svg("throughput", h, "input bytes per second over time")}<polyline points="${pts}"/>` +
    `<text x="44" y="14">peak ${mb(peak)}/s</text><text x="${WIDTH - 120}" y="${h - 4}">${seconds(last)}</text></svg>`
  );
};

/** After the first three inputs a report names: how many more, or (a job of pieces, named by its prefix) how many in all. */
const inputsMore = (r: JobReport): string =>
  r.inputCount !== undefined
    ? `${r.inputs.length > 3 ? " …" : ""} (${r.inputCount} inputs)`
    : r.inputs.length > 3
      ? ` and ${r.inputs.length - 3} more`
      : "";

/** Bars a histogram chart draws at most: more bins are summed in groups. */
const MAX_BARS = 400;

const histogram = (chart: NonNullable<JobReport["chart"]>): string => {
  const h = 180;
  const group = Math.ceil(chart.bins.length / MAX_BARS);
  const bins: number[] = [];
  for (let i = 0; i < chart.bins.length; i += group) bins.push(chart.bins.slice(i, i + group).reduce((a, b) => a + b, 0));
  let peak = 1;
  for (const n of bins) peak = Math.max(peak, n);
  const w = (WIDTH - 60) / Math.max(1, bins.length);
  const bars = bins
    .map((n, i) => {
      const bh = (n / peak) * (h - 40);
      const box = `x="${(40 + i * w).toFixed(1)}" y="${(h - 20 - bh).toFixed(1)}" width="${Math.max(1, w - 2).toFixed(1)}"`;
      return `<rect class="bin" ${box} height="${bh.toFixed(1)}"><title>${n}</title></rect>`;
    })
    .join("");
  return (
    `${svg("histogram", h, "the histogram")}${bars}` +
    `<text x="40" y="${h - 4}">${chart.min}</text><text x="${WIDTH - 80}" y="${h - 4}">${chart.max}</text></svg>`
  );
};

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px}
.meta{color:#556}table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #e4e8ee}
svg text{font:11px system-ui,sans-serif;fill:#445}svg line{stroke:#e4e8ee}
rect.task.fleet{fill:#3b7dd8}rect.task.lambda{fill:#e0912b}rect.task.local{fill:#7b5ea7}rect.task.straggler{stroke:#c62828;stroke-width:2}
polyline{fill:none;stroke:#3b7dd8;stroke-width:2}rect.bin{fill:#5b9a68}
.key span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}`;

/** The report as a page. */
export const reportHtml = (r: JobReport): string => {
  const wall = Date.parse(r.finishedAt) - Date.parse(r.startedAt);
  const costRows = (
    [
      ["instances (fleet)", r.cost.fleetPriced ? r.cost.fleet : Number.NaN],
      ["Lambda (inline)", r.cost.lambda],
      ["S3 requests", r.cost.s3Requests],
      ["SQS", r.cost.sqs],
      ...(r.cost.lostCopies !== undefined ? [["copies that lost a backup race", r.cost.lostCopies] as const] : []),
      // Without the fleet's price the total would be a part passed off as the whole.
      ["total", r.cost.fleetPriced ? r.cost.total : Number.NaN],
    ] as const
  )
    .map(([what, x]) => `<tr><td>${what}</td><td>${usd(x)}</td></tr>`)
    .join("");
  const stragglers = r.stragglers.length
    ? `<table><tr><th>chunk</th><th>worker</th><th>time</th><th>× median</th></tr>${r.stragglers
        .slice(0, 50)
        .map((s) => `<tr><td>${s.index}</td><td>${esc(s.worker)}</td><td>${seconds(s.ms)}</td><td>${s.timesMedian}</td></tr>`)
        .join("")}</table>`
    : "<p>none: no task took more than three times the median.</p>";
  const moreStragglers = r.straggling > r.stragglers.length ? `<p class="meta">${r.straggling} in all; the slowest are listed.</p>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cloudmill job ${esc(r.jobId)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>${STYLE}</style></head>
<body>
<h1>${esc(r.op)} — job ${esc(r.jobId)}</h1>
<p class="meta">${esc(r.inputs.slice(0, 3).join(", "))}${inputsMore(r)} ·
${r.taskCount} tasks on ${r.workers.length} worker(s) · ${seconds(wall)} from first task to result ·
median task ${seconds(r.medianMs)} · ${r.cost.fleetPriced ? usd(r.cost.total) : "fleet time unpriced"}</p>
<h2>Tasks per worker</h2>
<p class="key"><span style="background:#3b7dd8"></span>fleet<span style="background:#e0912b"></span>inline (splitter)
<span style="background:#7b5ea7"></span>this machine<span style="border:2px solid #c62828"></span>straggler</p>
${timeline(r)}
${r.omittedTasks ? `<p class="meta">The ${r.omittedTasks} fastest tasks are not drawn; every figure counts them.</p>` : ""}
<h2>Throughput</h2>
${throughput(r)}
<h2>Cost</h2>
<table>${costRows}</table>
<p class="meta">${esc(r.cost.basis)}</p>
<h2>Stragglers</h2>
${stragglers}${moreStragglers}
${r.chart ? `<h2>Result</h2>${histogram(r.chart)}` : ""}
</body></html>
`;
};
