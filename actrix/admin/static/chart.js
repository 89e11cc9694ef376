// A small time-series line chart on <canvas>: a zero-based y axis with round
// ticks, clock labels on x, gaps where a sample is missing (null), and a hover
// read-out. Colours come from CSS custom properties (--c0, --c1, ...), so the
// stylesheet owns them.

import { h, replace, fmtClock, fmtShort } from "./dom.js";

const PAD = { top: 10, right: 12, bottom: 22, left: 36 };
const FONT = "11px system-ui, sans-serif";

function niceStep(span, ticks, binary) {
  if (binary && span >= 1024) {
    // Byte charts tick at round KiB/MiB/... so the labels stay short.
    const scale = 1024 ** Math.floor(Math.log(span) / Math.log(1024));
    return niceStep(span / scale, ticks, false) * scale;
  }
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

export class LineChart {
  /**
   * @param spec.title   heading above the chart
   * @param spec.series  [{key, label}] drawn in order with colours --c0, --c1, ...
   * @param spec.format  value formatter for ticks and the read-out (default fmtShort)
   * @param spec.binary  ticks at powers of 1024 (byte rates)
   * @param spec.integer ticks at whole numbers at least (counts)
   */
  constructor(spec) {
    this.spec = spec;
    this.format = spec.format || fmtShort;
    this.data = { start: 0, step: 1, series: {} };
    this.hover = null;
    this.canvas = h("canvas", { class: "chart-canvas", role: "img", "aria-label": `${spec.title}: no samples yet` });
    this.readout = h("div", { class: "chart-readout", hidden: true, "aria-hidden": "true" });
    this.legend = h("ul", { class: "legend" },
      spec.series.map((s, i) => h("li", { class: `c${i}` }, h("span", { class: "swatch", "aria-hidden": "true" }), s.label,
        h("strong", { class: "latest", dataset: { key: s.key } }, "—"))));
    this.element = h("figure", { class: "chart", dataset: { chart: spec.key || spec.title } },
      h("figcaption", {}, h("span", { class: "chart-title" }, spec.title), this.legend),
      h("div", { class: "chart-body" }, this.canvas, this.readout));
    this.canvas.addEventListener("mousemove", (e) => this.onHover(e));
    this.canvas.addEventListener("mouseleave", () => { this.hover = null; this.readout.hidden = true; this.draw(); });
    this.resize = new ResizeObserver(() => this.draw());
    this.resize.observe(this.canvas);
  }

  /** New samples: arrays aligned on start + i * step (seconds). */
  update(start, step, series) {
    this.data = { start, step, series };
    for (const s of this.spec.series) {
      const values = series[s.key] || [];
      let latest = null;
      for (let i = values.length - 1; i >= 0; i -= 1) if (values[i] !== null && values[i] !== undefined) { latest = values[i]; break; }
      const cell = this.legend.querySelector(`[data-key="${s.key}"]`);
      replace(cell, latest === null ? "—" : this.format(latest));
    }
    const parts = this.spec.series.map((s) => `${s.label} ${this.legendValue(s.key)}`);
    this.canvas.setAttribute("aria-label", `${this.spec.title}, latest: ${parts.join(", ")}`);
    this.draw();
  }

  legendValue(key) {
    const cell = this.legend.querySelector(`[data-key="${key}"]`);
    return cell ? cell.textContent : "—";
  }

  length() {
    return Math.max(0, ...this.spec.series.map((s) => (this.data.series[s.key] || []).length));
  }

  geometry() {
    const dpr = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    const n = this.length();
    let max = 0;
    for (const s of this.spec.series) for (const v of this.data.series[s.key] || []) if (v > max) max = v;
    let step = niceStep(max > 0 ? max : 1, 4, this.spec.binary);
    if (this.spec.integer) step = Math.max(1, step); // counts: no 0.25 ticks
    const top = Math.max(step, Math.ceil(max / step) * step);
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    // The plot starts right of the widest tick label.
    const ctx = this.canvas.getContext("2d");
    ctx.font = FONT;
    const left = Math.max(PAD.left, 12 + Math.max(...ticks.map((v) => ctx.measureText(this.format(v)).width)));
    const plotW = Math.max(1, width - left - PAD.right);
    const plotH = Math.max(1, height - PAD.top - PAD.bottom);
    return {
      dpr, width, height, n, step, top, ticks, left, plotW, plotH,
      x: (i) => left + (n <= 1 ? plotW : (i / (n - 1)) * plotW),
      y: (v) => PAD.top + plotH - (v / top) * plotH,
    };
  }

  draw() {
    const { canvas } = this;
    const g = this.geometry();
    if (g.width === 0 || g.height === 0) return;
    canvas.width = Math.round(g.width * g.dpr);
    canvas.height = Math.round(g.height * g.dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    const css = getComputedStyle(this.element);
    const ink = css.getPropertyValue("--chart-ink").trim() || "#6b7280";
    const grid = css.getPropertyValue("--chart-grid").trim() || "#e5e7eb";
    ctx.font = FONT;
    ctx.fillStyle = ink;
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const v of g.ticks) {
      const y = Math.round(g.y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(g.left, y);
      ctx.lineTo(g.left + g.plotW, y);
      ctx.stroke();
      ctx.fillText(this.format(v), g.left - 6, y);
    }
    if (g.n === 0) {
      ctx.textAlign = "center";
      ctx.fillText("No samples yet", g.left + g.plotW / 2, PAD.top + g.plotH / 2);
      canvas.dataset.points = "0";
      return;
    }
    this.drawTimeAxis(ctx, g);
    let points = 0;
    this.spec.series.forEach((s, i) => {
      points += this.drawLine(ctx, g, this.data.series[s.key] || [], css.getPropertyValue(`--c${i}`).trim() || "#2563eb");
    });
    if (this.hover !== null && this.hover < g.n) {
      const x = Math.round(g.x(this.hover)) + 0.5;
      ctx.strokeStyle = ink;
      ctx.beginPath();
      ctx.moveTo(x, PAD.top);
      ctx.lineTo(x, PAD.top + g.plotH);
      ctx.stroke();
    }
    canvas.dataset.points = String(points);
  }

  drawTimeAxis(ctx, g) {
    const { start, step } = this.data;
    const end = start + (g.n - 1) * step;
    const withSeconds = end - start < 600;
    const width = ctx.measureText(fmtClock(end, withSeconds)).width;
    const fit = Math.max(2, Math.min(7, Math.floor(g.plotW / (width * 1.8))));
    const labels = g.n < 2 ? 1 : fit;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let k = 0; k < labels; k += 1) {
      const i = labels === 1 ? g.n - 1 : Math.round((k / (labels - 1)) * (g.n - 1));
      // Centred under its sample, but kept inside the plot so it is never clipped.
      const x = Math.min(Math.max(g.x(i), g.left + width / 2), g.left + g.plotW - width / 2);
      ctx.fillText(fmtClock(start + i * step, withSeconds), x, PAD.top + g.plotH + 6);
    }
  }

  drawLine(ctx, g, values, colour) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let drawing = false;
    let points = 0;
    for (let i = 0; i < values.length; i += 1) {
      const v = values[i];
      if (v === null || v === undefined) {
        drawing = false;
        continue;
      }
      const x = g.x(i);
      const y = g.y(v);
      if (drawing) ctx.lineTo(x, y);
      else {
        ctx.moveTo(x, y);
        ctx.lineTo(x + 0.01, y); // a lone sample still shows as a dot
      }
      drawing = true;
      points += 1;
    }
    ctx.stroke();
    return points;
  }

  onHover(event) {
    const g = this.geometry();
    if (g.n === 0) return;
    const rect = this.canvas.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const i = Math.round(((px - g.left) / g.plotW) * (g.n - 1));
    if (i < 0 || i >= g.n) {
      this.hover = null;
      this.readout.hidden = true;
      this.draw();
      return;
    }
    this.hover = i;
    const t = this.data.start + i * this.data.step;
    replace(this.readout, h("div", { class: "readout-time" }, fmtClock(t)),
      this.spec.series.map((s, k) => {
        const v = (this.data.series[s.key] || [])[i];
        return h("div", { class: `c${k}` }, h("span", { class: "swatch" }), `${s.label}: `,
          v === null || v === undefined ? "no sample" : this.format(v));
      }));
    this.readout.hidden = false;
    // CSSOM positioning (allowed under a strict CSP, unlike style attributes).
    const left = Math.min(px + 12, rect.width - this.readout.offsetWidth - 4);
    this.readout.style.left = `${Math.max(0, left)}px`;
    this.draw();
  }

  destroy() {
    this.resize.disconnect();
  }
}
