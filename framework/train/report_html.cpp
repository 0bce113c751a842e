// The page of `strand report`: one self-contained HTML file (inline CSS, SVG charts with a linear
// and a log-scale drawing each, a few lines of inline script for the toggle, pictures as data
// URIs), from a RunReport. Every string from the run directory goes through html_escape.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <set>
#include <sstream>

#include "framework/train/metrics.h"
#include "framework/train/report.h"

namespace strand::train {

namespace {

// ---- text ----

std::string number_text(double v) {
  if (!std::isfinite(v)) return "n/a";
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, (a != 0.0 && (a >= 1e6 || a < 1e-3)) ? "%.3g" : "%.5g", v);
  return buf;
}

// Tick labels: short.
std::string tick_text(double v) {
  char buf[32];
  const double a = std::fabs(v);
  std::snprintf(buf, sizeof buf, (a != 0.0 && (a >= 1e5 || a < 1e-3)) ? "%.2g" : "%.4g", v);
  return buf;
}

std::string utc_text(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t b0 = static_cast<unsigned char>(bytes[i]);
    const uint32_t b1 = i + 1 < bytes.size() ? static_cast<unsigned char>(bytes[i + 1]) : 0;
    const uint32_t b2 = i + 2 < bytes.size() ? static_cast<unsigned char>(bytes[i + 2]) : 0;
    const uint32_t n = (b0 << 16) | (b1 << 8) | b2;
    out += table[(n >> 18) & 63];
    out += table[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? table[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? table[n & 63] : '=';
  }
  return out;
}

// ---- charts ----

struct SeriesSpec {
  std::string key, label, color;
  double scale = 1.0;  // multiplies the logged value (bytes to MiB)
};

struct ChartSpec {
  std::string id, title;
  std::vector<SeriesSpec> series;
};

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

// Fields of a metrics line that are counters or clocks, not curves worth a chart.
const std::set<std::string> kNotCharted = {"step", "skipped", "tokens_seen", "elapsed_s", "timestamp", "epoch", "eta_s"};

// The charts of a report: the six the trainer always logs (architecture.md §7), then one for
// every other numeric field that some line has (validation accuracy, MFU, step time, and
// whatever later commands add), so that no logged curve goes unseen.
std::vector<ChartSpec> chart_specs(const std::vector<MetricsRow>& rows) {
  std::vector<ChartSpec> specs = {
      {"loss", "Loss", {{"loss", "train loss", kColors[0]}, {"val_loss", "val loss", kColors[1]}}},
      {"lr", "Learning rate", {{"lr", "lr", kColors[0]}}},
      {"grad_norm", "Gradient norm (before clipping)", {{"grad_norm", "grad norm", kColors[0]}}},
      {"tokens_per_s", "Tokens per second (all ranks)", {{"tokens_per_s", "tokens/s", kColors[0]}}},
      {"peak_mem", "Peak memory, MiB (rank 0's allocator)",
       {{"peak_mem_bytes", "peak memory", kColors[0], 1.0 / (1024.0 * 1024.0)}}},
      {"loss_scale", "Loss scale (fp16; 1 otherwise)", {{"loss_scale", "loss scale", kColors[0]}}},
  };
  std::set<std::string> shown = {"loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_bytes", "loss_scale"};
  // Fields with at least one value (mfu is null throughout without a peak FLOP/s figure).
  std::set<std::string> present;
  for (const MetricsRow& row : rows)
    for (const auto& [key, value] : row)
      if (value) present.insert(key);
  if (present.count("val_accuracy") || present.count("val_row_accuracy")) {
    specs.push_back({"val_accuracy", "Validation accuracy",
                     {{"val_accuracy", "answer tokens", kColors[0]}, {"val_row_accuracy", "whole rows", kColors[1]}}});
    shown.insert({"val_accuracy", "val_row_accuracy"});
  }
  if (present.count("mfu")) {
    specs.push_back({"mfu", "Model FLOPs utilisation", {{"mfu", "MFU", kColors[0]}}});
    shown.insert("mfu");
  }
  if (present.count("step_ms")) {
    specs.push_back({"step_ms", "Step time, ms", {{"step_ms", "step time", kColors[0]}}});
    shown.insert("step_ms");
  }
  for (const std::string& key : present)
    if (!shown.count(key) && !kNotCharted.count(key)) specs.push_back({"m_" + key, key, {{key, key, kColors[0]}}});
  return specs;
}

struct Point {
  double x, y;
};

std::vector<Point> points_of(const std::vector<MetricsRow>& rows, const SeriesSpec& s) {
  std::vector<Point> all;
  for (const MetricsRow& row : rows) {
    const auto v = row.find(s.key);
    const auto step = row.find("step");
    if (v == row.end() || !v->second || step == row.end() || !step->second) continue;
    const double y = *v->second * s.scale;
    if (std::isfinite(y)) all.push_back({*step->second, y});
  }
  if (all.size() <= kMaxChartPoints) return all;
  // Thinned evenly; the last point stays, so the curve ends where the run is.
  const size_t stride = (all.size() + kMaxChartPoints - 1) / kMaxChartPoints;
  std::vector<Point> kept;
  for (size_t i = 0; i < all.size(); ++i)
    if (i % stride == 0 || i + 1 == all.size()) kept.push_back(all[i]);
  return kept;
}

// About `count` round ticks (1, 2 or 5 times a power of ten) covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi, int count) {
  const double raw = (hi - lo) / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power;
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (step >= raw) break;
  }
  // Counted, not accumulated: a step below the spacing of doubles near `lo` cannot stall the loop.
  std::vector<double> ticks;
  const double first = std::ceil(lo / step);
  for (int k = 0; k <= 4 * count; ++k) {
    const double t = (first + k) * step;
    if (t > hi + step * 1e-9) break;
    if (ticks.empty() || t > ticks.back()) ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

constexpr double kWidth = 560, kHeight = 230, kLeft = 64, kRight = 16, kTop = 12, kBottom = 36;

struct Axis {
  double lo, hi;          // data range (log10 of it for a log axis)
  double pixel_lo, pixel_hi;
  double at(double v) const { return pixel_lo + (v - lo) / (hi - lo) * (pixel_hi - pixel_lo); }
};

std::string coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A range with room: (nearly) equal ends are spread apart, then 4% added on each side.
std::pair<double, double> padded(double lo, double hi) {
  // A range within rounding of its values (a constant loss scale) is drawn as a constant.
  if (hi - lo <= 1e-9 * std::max(std::fabs(lo), std::fabs(hi))) {
    const double d = lo == 0.0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  const double pad = (hi - lo) * 0.04;
  return {lo - pad, hi + pad};
}

// One drawing of the y axis and the curves: linear, or log10 of the positive values.
std::string draw_y(const ChartSpec& spec, const std::vector<std::vector<Point>>& series, const Axis& x, bool log) {
  std::ostringstream os;
  double lo = INFINITY, hi = -INFINITY;
  size_t dropped = 0;
  for (const auto& pts : series)
    for (const Point& p : pts) {
      if (log && p.y <= 0) {
        ++dropped;
        continue;
      }
      const double y = log ? std::log10(p.y) : p.y;
      lo = std::min(lo, y);
      hi = std::max(hi, y);
    }
  os << "<g class=\"" << (log ? "log" : "lin") << "\">";
  if (!std::isfinite(lo)) {
    os << "<text class=\"empty\" x=\"" << coord(kWidth / 2) << "\" y=\"" << coord(kHeight / 2)
       << "\" text-anchor=\"middle\">" << (log ? "no positive values for a log scale" : "no values logged")
       << "</text></g>";
    return os.str();
  }
  const auto [ylo, yhi] = padded(lo, hi);
  const Axis y{ylo, yhi, kHeight - kBottom, kTop};
  std::vector<double> ticks;
  if (log) {
    // Decades, and 2 and 5 times them when the curve spans less than two decades.
    const bool fine = yhi - ylo < 2.0;
    for (double d = std::floor(ylo); d <= std::ceil(yhi); d += 1.0)
      for (const double m : fine ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double t = d + std::log10(m);
        if (t >= ylo && t <= yhi) ticks.push_back(t);
      }
    if (ticks.size() < 2) ticks = nice_ticks(ylo, yhi, 4);  // within one factor of 2: plain ticks of log10
  } else {
    ticks = nice_ticks(ylo, yhi, 5);
  }
  for (const double t : ticks) {
    const std::string py = coord(y.at(t));
    os << "<line class=\"grid\" x1=\"" << coord(kLeft) << "\" x2=\"" << coord(kWidth - kRight) << "\" y1=\"" << py
       << "\" y2=\"" << py << "\"/><text class=\"tick\" x=\"" << coord(kLeft - 6) << "\" y=\"" << py
       << "\" text-anchor=\"end\" dominant-baseline=\"middle\">" << tick_text(log ? std::pow(10.0, t) : t)
       << "</text>";
  }
  for (size_t s = 0; s < series.size(); ++s) {
    const SeriesSpec& spec_s = spec.series[s];
    std::string points;
    size_t n = 0;
    for (const Point& p : series[s]) {
      if (log && p.y <= 0) continue;
      if (n++ > 0) points += ' ';
      points += coord(x.at(p.x));
      points += ',';
      points += coord(y.at(log ? std::log10(p.y) : p.y));
    }
    if (n == 0) continue;
    os << "<polyline class=\"series\" data-series=\"" << html_escape(spec_s.key) << "\" data-points=\"" << n
       << "\" fill=\"none\" stroke=\"" << spec_s.color << "\" stroke-width=\"1.6\" points=\"" << points << "\"/>";
    // Sparse curves (validation every few hundred steps, short runs) get markers at their points.
    if (n <= 30) {
      std::istringstream each(points);
      for (std::string xy; each >> xy;) {
        const size_t comma = xy.find(',');
        os << "<circle cx=\"" << xy.substr(0, comma) << "\" cy=\"" << xy.substr(comma + 1) << "\" r=\"2.4\" fill=\""
           << spec_s.color << "\"/>";
      }
    }
  }
  if (log && dropped > 0)
    os << "<text class=\"note\" x=\"" << coord(kWidth - kRight) << "\" y=\"" << coord(kTop + 10)
       << "\" text-anchor=\"end\">" << dropped << " values &#8804; 0 not drawn</text>";
  os << "</g>";
  return os.str();
}

std::string chart_html(const ChartSpec& spec, const std::vector<MetricsRow>& rows) {
  std::vector<std::vector<Point>> series;
  double xlo = INFINITY, xhi = -INFINITY;
  for (const SeriesSpec& s : spec.series) {
    series.push_back(points_of(rows, s));
    for (const Point& p : series.back()) {
      xlo = std::min(xlo, p.x);
      xhi = std::max(xhi, p.x);
    }
  }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1;
  if (xhi <= xlo) xlo -= 1, xhi += 1;
  const Axis x{xlo, xhi, kLeft, kWidth - kRight};

  std::ostringstream os;
  os << "<figure class=\"chart\" id=\"chart-" << html_escape(spec.id) << "\"><figcaption><b>" << html_escape(spec.title)
     << "</b>";
  for (size_t s = 0; s < spec.series.size(); ++s) {
    if (series[s].empty() && spec.series.size() > 1) continue;
    os << " <span class=\"key\"><i style=\"background:" << spec.series[s].color << "\"></i>"
       << html_escape(spec.series[s].label) << "</span>";
  }
  os << "</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kWidth << " " << kHeight
     << "\" width=\"" << kWidth << "\" height=\"" << kHeight << "\" role=\"img\" aria-label=\""
     << html_escape(spec.title) << " over steps\">";
  // The axes and the x ticks (steps) are shared by both drawings.
  os << "<line class=\"axis\" x1=\"" << coord(kLeft) << "\" x2=\"" << coord(kWidth - kRight) << "\" y1=\""
     << coord(kHeight - kBottom) << "\" y2=\"" << coord(kHeight - kBottom) << "\"/><line class=\"axis\" x1=\""
     << coord(kLeft) << "\" x2=\"" << coord(kLeft) << "\" y1=\"" << coord(kTop) << "\" y2=\""
     << coord(kHeight - kBottom) << "\"/>";
  for (const double t : nice_ticks(xlo, xhi, 6)) {
    if (t != std::round(t)) continue;  // steps are whole
    os << "<text class=\"tick\" x=\"" << coord(x.at(t)) << "\" y=\"" << coord(kHeight - kBottom + 16)
       << "\" text-anchor=\"middle\">" << tick_text(t) << "</text>";
  }
  os << "<text class=\"label\" x=\"" << coord(kWidth - kRight) << "\" y=\"" << coord(kHeight - 4)
     << "\" text-anchor=\"end\">step</text>";
  os << draw_y(spec, series, x, false) << draw_y(spec, series, x, true) << "</svg>";
  // The numbers behind the curve, so the page answers "where did it end" without hovering.
  os << "<p class=\"stats\">";
  for (size_t s = 0; s < spec.series.size(); ++s) {
    const auto& pts = series[s];
    if (pts.empty()) continue;
    const auto min_it = std::min_element(pts.begin(), pts.end(), [](const Point& a, const Point& b) { return a.y < b.y; });
    os << html_escape(spec.series[s].label) << ": last " << number_text(pts.back().y) << " (step "
       << number_text(pts.back().x) << "), min " << number_text(min_it->y) << " (step " << number_text(min_it->x)
       << ")" << (s + 1 < spec.series.size() ? "; " : "");
  }
  os << "</p></figure>\n";
  return os.str();
}

// ---- sections ----

std::optional<double> last_value(const std::vector<MetricsRow>& rows, const std::string& key) {
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) {
    const auto v = it->find(key);
    if (v != it->end() && v->second) return v->second;
  }
  return std::nullopt;
}

void row(std::ostringstream& os, const std::string& name, const std::string& value_html) {
  os << "<tr><th>" << html_escape(name) << "</th><td>" << value_html << "</td></tr>";
}

std::string summary_html(const RunReport& r, const std::string& generated_at) {
  std::ostringstream os;
  os << "<table class=\"kv\">";
  row(os, "run directory", "<code>" + html_escape(r.run_dir) + "</code>");
  row(os, "status", r.in_progress ? "<b>in progress</b> (a <code>strand train</code> holds the directory)"
                                  : "no run holds the directory now");
  if (!r.rows.empty()) {
    const auto first = r.rows.front().find("step"), last = r.rows.back().find("step");
    row(os, "steps logged",
        std::to_string(r.rows.size()) + " lines, steps " + number_text(first->second.value_or(NAN)) + " to " +
            number_text(last->second.value_or(NAN)));
    if (const auto v = last_value(r.rows, "loss")) row(os, "last train loss", number_text(*v));
    if (const auto v = last_value(r.rows, "val_loss")) row(os, "last val loss", number_text(*v));
    if (const auto v = last_value(r.rows, "tokens_seen")) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.0f", *v);
      row(os, "tokens seen", buf);
    }
    if (const auto v = last_value(r.rows, "timestamp")) row(os, "last line logged at", utc_text(*v));
  }
  row(os, "page made at", html_escape(generated_at));
  os << "</table>";
  return os.str();
}

std::string absent(const std::string& what) {
  return "<p class=\"absent\">" + html_escape(what) + ": not present.</p>";
}

std::string json_value_html(const JsonValue& v, int depth);

// An array of objects whose members are all scalars (per-head scores, per-layer rows): a table.
bool is_record_list(const JsonValue& v) {
  if (v.kind != JsonValue::Kind::Array || v.items.empty()) return false;
  for (const JsonValue& item : v.items) {
    if (item.kind != JsonValue::Kind::Object) return false;
    for (const auto& [key, value] : item.members)
      if (!value.is_scalar()) return false;
  }
  return true;
}

std::string record_table_html(const JsonValue& v) {
  constexpr size_t kMaxRows = 200;
  std::vector<std::string> columns;
  for (const JsonValue& item : v.items)
    for (const auto& [key, value] : item.members)
      if (std::find(columns.begin(), columns.end(), key) == columns.end()) columns.push_back(key);
  std::ostringstream os;
  os << "<table class=\"records\"><tr>";
  for (const std::string& c : columns) os << "<th>" << html_escape(c) << "</th>";
  os << "</tr>";
  for (size_t i = 0; i < v.items.size() && i < kMaxRows; ++i) {
    os << "<tr>";
    for (const std::string& c : columns) {
      const JsonValue* cell = v.items[i].find(c);
      os << "<td>" << (cell ? json_value_html(*cell, 1) : "") << "</td>";
    }
    os << "</tr>";
  }
  os << "</table>";
  if (v.items.size() > kMaxRows) os << "<p class=\"note\">" << v.items.size() - kMaxRows << " more rows not shown</p>";
  return os.str();
}

std::string json_value_html(const JsonValue& v, int depth) {
  constexpr size_t kMaxChars = 400;
  switch (v.kind) {
    case JsonValue::Kind::String: return html_escape(v.text);
    case JsonValue::Kind::Number: return html_escape(v.text);
    case JsonValue::Kind::Null: return "null";
    case JsonValue::Kind::Bool: return v.boolean ? "true" : "false";
    default: break;
  }
  if (depth == 0 && is_record_list(v)) return record_table_html(v);
  std::string text = to_json(v);
  if (text.size() > kMaxChars) {
    text = text.substr(0, kMaxChars) + " ...";
    const std::string count = v.kind == JsonValue::Kind::Array ? std::to_string(v.items.size()) + " items"
                                                               : std::to_string(v.members.size()) + " members";
    return "<code>" + html_escape(text) + "</code> <span class=\"note\">(" + count + ")</span>";
  }
  return "<code>" + html_escape(text) + "</code>";
}

std::string extra_html(const ExtraFile& f) {
  std::ostringstream os;
  os << "<div class=\"extra\"><h3><code>" << html_escape(f.relative_path) << "</code></h3>";
  if (!f.problem.empty()) {
    os << "<p class=\"absent\">" << html_escape(f.problem) << "</p></div>";
    return os.str();
  }
  switch (f.kind) {
    case ExtraFile::Kind::Png:
      os << "<img alt=\"" << html_escape(f.relative_path) << "\" src=\"data:image/png;base64," << base64(f.content)
         << "\">";
      break;
    case ExtraFile::Kind::Text: os << "<pre>" << html_escape(f.content) << "</pre>"; break;
    case ExtraFile::Kind::Json:
      if (f.json.kind == JsonValue::Kind::Object) {
        os << "<table class=\"kv\">";
        for (const auto& [key, value] : f.json.members) row(os, key, json_value_html(value, 0));
        os << "</table>";
      } else {
        os << "<p>" << json_value_html(f.json, 0) << "</p>";
      }
      break;
  }
  os << "</div>";
  return os.str();
}

std::string checkpoints_html(const RunReport& r) {
  if (r.checkpoint_dir.empty()) return absent("checkpoint directory");
  std::ostringstream os;
  os << "<p>In <code>" << html_escape(r.checkpoint_dir) << "</code>";
  if (r.checkpoints.empty()) {
    os << ": none written yet.</p>";
    return os.str();
  }
  os << ":</p><table class=\"records\"><tr><th>file</th><th>step</th><th>size</th><th>written</th><th></th></tr>";
  for (const CheckpointFile& c : r.checkpoints)
    os << "<tr><td><code>" << html_escape(c.name) << "</code></td><td>" << c.step << "</td><td>"
       << html_escape(format_bytes(c.bytes)) << "</td><td>" << utc_text(c.mtime) << "</td><td>"
       << (c.latest ? "latest" : "") << "</td></tr>";
  os << "</table>";
  return os.str();
}

const char* kStyle = R"(
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:16px 0 6px}nav a{margin-right:12px}
table{border-collapse:collapse}th,td{text-align:left;padding:2px 10px 2px 0;vertical-align:top}
table.records th,table.records td{border-bottom:1px solid #eee}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;max-height:480px;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{margin:0;border:1px solid #e4e4e4;padding:6px;width:560px}
.chart svg{display:block;max-width:100%;height:auto}
.key{margin-left:10px;font-size:12px}.key i{display:inline-block;width:12px;height:3px;margin:0 4px 3px 0}
.grid{stroke:#eee}.axis{stroke:#999}.tick,.label,.note,.empty{font-size:11px;fill:#555}
.stats,.note{font-size:12px;color:#555;margin:4px 0 0}.absent{color:#888;font-style:italic}
img{max-width:100%;border:1px solid #eee}
body:not(.log) g.log{display:none}body.log g.lin{display:none}
)";

// Recorded before anything else runs, so a test reading the DOM sees any script error.
const char* kErrorScript =
    "window.addEventListener('error',function(){var e=document.documentElement;"
    "e.setAttribute('data-report-errors',String(Number(e.getAttribute('data-report-errors')||0)+1));});";

// The log-scale toggle: both drawings are in the page; the script only picks one (#logscale in
// the address starts in log scale). After loading, the page counts its pictures and those that
// did not decode, for a test that reads the DOM.
const char* kPageScript =
    "(function(){var root=document.documentElement,box=document.getElementById('logscale');"
    "if(box){var apply=function(){document.body.classList.toggle('log',box.checked);};"
    "box.addEventListener('change',apply);if(location.hash==='#logscale')box.checked=true;apply();}"
    "window.addEventListener('load',function(){var bad=0;for(var i=0;i<document.images.length;i++){"
    "var im=document.images[i];if(!im.complete||im.naturalWidth===0)bad++;}"
    "root.setAttribute('data-report-images',String(document.images.length));"
    "root.setAttribute('data-report-broken-images',String(bad));});"
    "root.setAttribute('data-report-ready','1');})();";

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        case '\t': case '\n': out += static_cast<char>(c); break;
        default: out += c < 0x20 || c == 0x7f ? std::string("\xEF\xBF\xBD") : std::string(1, static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence passes through; anything else becomes U+FFFD.
    const size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool ok = len > 0 && i + len <= n && c >= 0xC2 && c <= 0xF4;
    for (size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xC0) == 0x80;
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string report_html(const RunReport& r, const std::string& generated_at) {
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
     << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
     << "<title>strand report: " << html_escape(r.run_dir) << "</title><style>" << kStyle << "</style><script>"
     << kErrorScript << "</script></head>\n<body>\n<h1>strand report: <code>" << html_escape(r.run_dir)
     << "</code></h1>\n<nav><a href=\"#summary\">summary</a><a href=\"#curves\">curves</a><a href=\"#checkpoints\">"
        "checkpoints</a><a href=\"#outputs\">analyze and prune outputs</a><a href=\"#config\">config</a><a "
        "href=\"#trainlog\">train.log</a></nav>\n";
  os << "<h2 id=\"summary\">Summary</h2>" << summary_html(r, generated_at) << "\n";

  os << "<h2 id=\"curves\">Curves over steps</h2>";
  if (!r.metrics_present) {
    os << absent("metrics.jsonl");
  } else {
    os << "<p><label><input type=\"checkbox\" id=\"logscale\"> log scale (y axes)</label></p>";
    if (r.partial_last_line) os << "<p class=\"note\">The last line of metrics.jsonl is still being written; it is left out.</p>";
    if (r.rows.empty()) os << "<p class=\"absent\">metrics.jsonl has no lines yet.</p>";
    os << "<div class=\"charts\">\n";
    for (const ChartSpec& spec : chart_specs(r.rows)) os << chart_html(spec, r.rows);
    os << "</div>\n";
  }
  os << "<h2 id=\"checkpoints\">Checkpoints</h2>" << checkpoints_html(r) << "\n";

  os << "<h2 id=\"outputs\">Analyze and prune outputs</h2>";
  if (r.extras.empty()) {
    os << "<p class=\"absent\">No pictures (.png), JSON or Markdown files in the run directory or its folders: "
          "not present.</p>";
  }
  for (const ExtraFile& f : r.extras) os << extra_html(f) << "\n";

  os << "<h2 id=\"config\">Resolved config (config.yaml)</h2>"
     << (r.config_yaml ? "<pre>" + html_escape(*r.config_yaml) + "</pre>" : absent("config.yaml")) << "\n";
  os << "<h2 id=\"trainlog\">train.log (last " << kLogTailLines << " lines)</h2>";
  if (!r.log_present) {
    os << absent("train.log");
  } else {
    std::string text;
    for (const std::string& line : r.log_tail) text += line + "\n";
    os << "<pre>" << html_escape(text) << "</pre>";
  }
  os << "\n<script>" << kPageScript << "</script>\n</body></html>\n";
  return os.str();
}

}  // namespace strand::train
