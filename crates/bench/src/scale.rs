//! The scale curve: how each query's time, the ingest rate and the memory grow with the number of events,
//! Keyhole next to DuckDB, as a Markdown table and an SVG plot (`images/benchmark-scale.svg` next to the
//! results document). Rendered when a run has at least two sizes.

use std::fmt::Write as _;

use crate::engines::Engine;
use crate::query_set::KeyKind;
use crate::run::{BenchResults, QueryOutcome, SizeResults};

/// Where the plot goes, relative to the results document.
pub const PLOT_PATH: &str = "images/benchmark-scale.svg";

fn duckdb_ms(query: &QueryOutcome) -> f64 {
    crate::report::duckdb_median(query).unwrap_or(f64::NAN)
}

fn duckdb_peak(size: &SizeResults) -> f64 {
    size.load_of(Engine::DuckDb)
        .map_or(f64::NAN, |load| load.peak_rss_mib)
}

fn geometric_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0), |(sum, count), value| {
        (sum + value.ln(), count + 1)
    });
    (sum / f64::from(count.max(1))).exp()
}

/// Geometric means of the settled medians of the queries made with `key`: (Keyhole, DuckDB).
fn class_means(size: &SizeResults, key: KeyKind) -> (f64, f64) {
    let queries = || size.queries.iter().filter(move |query| query.key == key);
    (
        geometric_mean(queries().map(|query| query.keyhole.median_ms)),
        geometric_mean(queries().map(duckdb_ms)),
    )
}

fn millions(events: u64) -> String {
    format!("{}M", events as f64 / 1e6)
}

pub fn render_scale(out: &mut String, results: &BenchResults) {
    let sizes = &results.sizes;
    if sizes.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "### Scale curve\n\nSettled medians, ms, Keyhole / DuckDB, at each size of this run; the last rows are the geometric \
         means of each class of queries, the ingest rate and the peak memory.\n\n![Keyhole and DuckDB as the events grow]({PLOT_PATH})\n"
    );
    let header: Vec<String> = sizes.iter().map(|size| millions(size.events)).collect();
    let _ = writeln!(
        out,
        "| query | {} |\n|---|{}",
        header.join(" | "),
        "---|".repeat(sizes.len())
    );
    for (index, query) in sizes[0].queries.iter().enumerate() {
        let cells: Vec<String> = sizes
            .iter()
            .map(|size| {
                size.queries.get(index).map_or("?".into(), |query| {
                    format!("{:.1} / {:.1}", query.keyhole.median_ms, duckdb_ms(query))
                })
            })
            .collect();
        let _ = writeln!(out, "| {} | {} |", query.name, cells.join(" | "));
    }
    for (label, key) in [
        ("geometric mean, unscoped queries", KeyKind::Read),
        ("geometric mean, tenant-key queries", KeyKind::Tenant),
    ] {
        let cells: Vec<String> = sizes
            .iter()
            .map(|size| {
                let (keyhole, duckdb) = class_means(size, key);
                format!("{keyhole:.1} / {duckdb:.1}")
            })
            .collect();
        let _ = writeln!(out, "| **{label}** | {} |", cells.join(" | "));
    }
    let ingest: Vec<String> = sizes
        .iter()
        .map(|size| {
            let duckdb = size
                .load_of(Engine::DuckDb)
                .map_or(f64::NAN, |load| size.events as f64 / load.load_seconds);
            format!(
                "{:.0}k / {:.0}k",
                size.batch.events_per_second() / 1e3,
                duckdb / 1e3
            )
        })
        .collect();
    let _ = writeln!(out, "| **ingest, events/s** | {} |", ingest.join(" | "));
    let memory: Vec<String> = sizes
        .iter()
        .map(|size| format!("{:.0} / {:.0}", size.peak_rss_mib, duckdb_peak(size)))
        .collect();
    let _ = writeln!(out, "| **peak RSS, MiB** | {} |\n", memory.join(" | "));
}

/// One line of a plot: its points (events, value), colour, whether dashed, and legend.
struct Series {
    points: Vec<(f64, f64)>,
    color: &'static str,
    dashed: bool,
    label: &'static str,
}

/// A log–log plot area of the SVG: maps values to pixels.
struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Panel {
    fn x(&self, value: f64) -> f64 {
        let (low, high) = (self.x_range.0.log10(), self.x_range.1.log10());
        self.left + (value.log10() - low) / (high - low) * self.width
    }

    fn y(&self, value: f64) -> f64 {
        let (low, high) = (self.y_range.0.log10(), self.y_range.1.log10());
        self.top + self.height - (value.log10() - low) / (high - low) * self.height
    }

    fn frame(&self, svg: &mut String, title: &str, sizes: &[u64]) {
        let _ = writeln!(
            svg,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{}" y="{}" font-size="14" text-anchor="middle">{title}</text>"##,
            self.left,
            self.top,
            self.width,
            self.height,
            self.left + self.width / 2.0,
            self.top - 10.0
        );
        for &events in sizes {
            let x = self.x(events as f64);
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" font-size="12" text-anchor="middle">{} events</text>"##,
                self.top,
                self.top + self.height,
                self.top + self.height + 16.0,
                millions(events)
            );
        }
        let mut tick = 10f64.powf(self.y_range.0.log10().floor());
        while tick <= self.y_range.1 {
            for step in [1.0, 2.0, 5.0] {
                let value = tick * step;
                if value < self.y_range.0 || value > self.y_range.1 {
                    continue;
                }
                let y = self.y(value);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" font-size="11" text-anchor="end">{value}</text>"##,
                    self.left,
                    self.left + self.width,
                    self.left - 4.0,
                    y + 4.0
                );
            }
            tick *= 10.0;
        }
    }

    fn line(&self, svg: &mut String, points: &[(f64, f64)], color: &str, dashed: bool) {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.x(*x), self.y(*y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for (x, y) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                self.x(*x),
                self.y(*y)
            );
        }
    }
}

/// The value range of `values` widened to whole powers of ten around them.
fn decade_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|value| value.is_finite() && *value > 0.0)
        .fold((f64::MAX, f64::MIN), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if low > high {
        return (1.0, 10.0);
    }
    (
        10f64.powf(low.log10().floor()),
        10f64
            .powf(high.log10().ceil())
            .max(10f64.powf(low.log10().floor() + 1.0)),
    )
}

/// The scale plot as SVG: query time by class (left) and peak memory (right) against the number of events.
pub fn plot_svg(results: &BenchResults) -> Option<String> {
    let sizes: Vec<u64> = results.sizes.iter().map(|size| size.events).collect();
    if sizes.len() < 2 {
        return None;
    }
    let x_range = (sizes[0] as f64 / 1.5, *sizes.last()? as f64 * 1.5);
    let series = |pick: &dyn Fn(&SizeResults) -> f64| -> Vec<(f64, f64)> {
        results
            .sizes
            .iter()
            .map(|size| (size.events as f64, pick(size)))
            .collect()
    };
    let times = [
        Series {
            points: series(&|size| class_means(size, KeyKind::Read).0),
            color: "#1f77b4",
            dashed: false,
            label: "Keyhole, unscoped",
        },
        Series {
            points: series(&|size| class_means(size, KeyKind::Read).1),
            color: "#ff7f0e",
            dashed: false,
            label: "DuckDB, unscoped",
        },
        Series {
            points: series(&|size| class_means(size, KeyKind::Tenant).0),
            color: "#1f77b4",
            dashed: true,
            label: "Keyhole, tenant key",
        },
        Series {
            points: series(&|size| class_means(size, KeyKind::Tenant).1),
            color: "#ff7f0e",
            dashed: true,
            label: "DuckDB, tenant filter",
        },
    ];
    let memory = [
        Series {
            points: series(&|size| size.peak_rss_mib),
            color: "#1f77b4",
            dashed: false,
            label: "Keyhole peak RSS",
        },
        Series {
            points: series(&duckdb_peak),
            color: "#ff7f0e",
            dashed: false,
            label: "DuckDB process peak",
        },
    ];
    let panel = |left: f64, values: &[Series]| Panel {
        left,
        top: 40.0,
        width: 330.0,
        height: 260.0,
        x_range,
        y_range: decade_range(
            values
                .iter()
                .flat_map(|series| series.points.iter().map(|point| point.1)),
        ),
    };
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="900" height="400" font-family="sans-serif"><rect width="900" height="400" fill="white"/>"#,
    );
    svg.push('\n');
    for (left, title, values) in [
        (
            70.0,
            "query time, ms (geometric mean of medians)",
            &times[..],
        ),
        (520.0, "peak memory, MiB", &memory[..]),
    ] {
        let area = panel(left, values);
        area.frame(&mut svg, title, &sizes);
        for (row, series) in values.iter().enumerate() {
            let Series {
                points,
                color,
                dashed,
                label,
            } = series;
            area.line(&mut svg, points, color, *dashed);
            let y = 345.0 + 15.0 * row as f64;
            let dash = if *dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" font-size="12">{label}</text>"#,
                left + 30.0,
                left + 36.0,
                y + 4.0
            );
        }
    }
    svg.push_str("</svg>\n");
    Some(svg)
}
