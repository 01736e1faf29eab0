//! Benchmark plots: recall vs bytes per vector and recall vs QPS, as SVG (plotters) and
//! PNG (the same SVG rasterised by resvg with an embedded DejaVu Sans Mono, so the PNG
//! needs no system fonts).

use std::path::Path;

use plotters::prelude::*;

use vecquant::data::write_file_atomic;
use vecquant::{Error, Result};

/// The font embedded for PNG rendering (DejaVu Sans Mono; license in
/// `assets/fonts/DejaVu-LICENSE.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// One curve: a spec swept over its search parameters (or a single point).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Quantizer family ([`family_of`]): decides the colour.
    pub family: &'static str,
    /// Variant within the family: decides the marker shape.
    pub variant: usize,
    /// (x, y) points, in sweep order.
    pub points: Vec<(f64, f64)>,
    /// Text drawn beside each point (the swept nprobe / ef), or empty.
    pub point_labels: Vec<String>,
    /// Drawn hollow with a thin line (a reference library's points).
    pub reference: bool,
    /// Searched with exact re-ranking: drawn with a dashed line and a half-filled marker.
    pub reranked: bool,
}

/// How the x axis is labelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticks {
    /// A label at every power of two in range (bytes), thinned only if they would touch.
    PowersOfTwo,
    /// 1-2-5 per decade (or denser/sparser, whichever is densest without touching).
    Decimal,
}

/// A chart description.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    /// Title.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Whether larger x is better (QPS) or smaller (bytes): orients the Pareto frontier.
    pub larger_x_is_better: bool,
    /// Where the x axis has labels.
    pub ticks: Ticks,
}

/// The families, in legend order, with their colours (colour-blind-safe, one per family).
const FAMILIES: [(&str, (u8, u8, u8)); 8] = [
    ("Flat", (0, 0, 0)),
    ("SQ", (0, 114, 178)),
    ("PQ", (213, 94, 0)),
    ("OPQ,PQ", (204, 121, 167)),
    ("IVF", (0, 158, 115)),
    ("HNSW", (117, 112, 179)),
    ("RaBitQ", (153, 0, 0)),
    ("other", (86, 180, 233)),
];

/// The quantizer family of a spec, for its colour: `Flat`, `SQ` (every scalar variant),
/// `PQ` (8-bit and fast-scan), `OPQ,PQ`, `IVF`, `HNSW` (also `hnswlib…`), `RaBitQ`, else
/// `other`.
pub fn family_of(spec: &str) -> &'static str {
    use vecquant::index::spec::IndexSpec;
    match spec.parse::<IndexSpec>() {
        Ok(IndexSpec::Flat) => "Flat",
        Ok(IndexSpec::Scalar(_)) => "SQ",
        Ok(IndexSpec::Product { opq: false, .. }) => "PQ",
        Ok(IndexSpec::Product { opq: true, .. }) => "OPQ,PQ",
        Ok(IndexSpec::Ivf { .. }) => "IVF",
        Ok(IndexSpec::Hnsw { .. }) => "HNSW",
        Ok(IndexSpec::RaBitQ(_) | IndexSpec::RaBitQFs(_)) => "RaBitQ",
        Err(_) if spec.to_ascii_lowercase().starts_with("hnsw") => "HNSW",
        Err(_) => "other",
    }
}

/// The colour of a family ([`family_of`]).
pub fn family_color(family: &str) -> RGBColor {
    let (_, (r, g, b)) = FAMILIES
        .iter()
        .find(|(f, _)| *f == family)
        .unwrap_or(&FAMILIES[FAMILIES.len() - 1]);
    RGBColor(*r, *g, *b)
}

/// The label of an x tick: `16`, `512`, `4Ki` for bytes; `500`, `2k`, `100k`, `1.5M`
/// for rates.
pub fn tick_label(x: f64, ticks: Ticks) -> String {
    let trim = |v: f64, unit: &str| {
        let t = format!("{v:.1}");
        format!("{}{unit}", t.strip_suffix(".0").unwrap_or(&t))
    };
    match ticks {
        Ticks::PowersOfTwo if x >= 1024.0 => trim(x / 1024.0, "Ki"),
        Ticks::Decimal if x >= 1e6 => trim(x / 1e6, "M"),
        Ticks::Decimal if x >= 1e3 => trim(x / 1e3, "k"),
        _ => trim(x, ""),
    }
}

/// Pixels per character of the tick font (DejaVu Sans Mono advances 0.602 em).
const CHAR_EM: f64 = 0.602;

/// Whether the labels of `ticks` on a log axis `lo..hi` drawn over `axis_px` pixels with
/// `font_px` glyphs leave at least one character of space between neighbours.
pub fn labels_fit(
    ticks: &[f64],
    lo: f64,
    hi: f64,
    axis_px: f64,
    font_px: f64,
    kind: Ticks,
) -> bool {
    let span = (hi / lo).ln();
    let px = |x: f64| (x / lo).ln() / span * axis_px;
    let width = |x: f64| tick_label(x, kind).chars().count() as f64 * CHAR_EM * font_px;
    ticks.windows(2).all(|w| {
        let room = px(w[1]) - px(w[0]);
        room >= (width(w[0]) + width(w[1])) / 2.0 + CHAR_EM * font_px
    })
}

/// The x ticks of a log axis `lo..hi` (`0 < lo < hi`): the densest candidate set whose
/// labels do not touch ([`labels_fit`]). Powers of two: every power of two, else every
/// second, third, …; decimal: 1…9, 1-2-5, 1-3, 1, then every second decade, ….
pub fn log_ticks(lo: f64, hi: f64, axis_px: f64, font_px: f64, kind: Ticks) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return Vec::new();
    }
    let in_range = |v: &f64| *v >= lo && *v <= hi;
    let mut last = Vec::new();
    match kind {
        Ticks::PowersOfTwo => {
            let (a, b) = (lo.log2().ceil() as i32, hi.log2().floor() as i32);
            for step in 1..=64 {
                let t: Vec<f64> = (a..=b)
                    .filter(|e| e.rem_euclid(step) == 0)
                    .map(|e| 2f64.powi(e))
                    .collect();
                if labels_fit(&t, lo, hi, axis_px, font_px, kind) {
                    return t;
                }
                last = t;
            }
        }
        Ticks::Decimal => {
            let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
            let mantissas: [&[f64]; 4] = [
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
                &[1.0, 2.0, 5.0],
                &[1.0, 3.0],
                &[1.0],
            ];
            let sets = mantissas
                .iter()
                .map(|m| (*m, 1))
                .chain((2..=8).map(|s| (&[1.0][..], s)));
            for (m, step) in sets {
                let t: Vec<f64> = (a..=b)
                    .filter(|e| e.rem_euclid(step) == 0)
                    .flat_map(|e| m.iter().map(move |&d| d * 10f64.powi(e)))
                    .filter(in_range)
                    .collect();
                if labels_fit(&t, lo, hi, axis_px, font_px, kind) {
                    return t;
                }
                last = t;
            }
        }
    }
    last
}

/// The Pareto-optimal points of `pts` (maximising y, and x in the chosen direction),
/// sorted by x.
pub fn pareto(pts: &[(f64, f64)], larger_x_is_better: bool) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite() && p.0 > 0.0)
        .collect();
    // Walk from the best x to the worst, keeping points that improve recall; at equal x
    // the highest recall first (it dominates the others there: one sweep of a spec
    // has a single bytes/vector, and its frontier is its best point, not a vertical
    // line through all of them).
    v.sort_by(|a, b| {
        let o = a.0.total_cmp(&b.0);
        let o = if larger_x_is_better { o.reverse() } else { o };
        o.then(b.1.total_cmp(&a.1))
    });
    let mut out = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for p in v {
        if p.1 > best {
            best = p.1;
            out.push(p);
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The corners of marker `shape` (circle, square, triangle, diamond, inverted triangle,
/// pentagon, star, hexagon; then again) of radius `r` around `(cx, cy)`, in pixels.
fn marker_outline(shape: usize, (cx, cy): (i32, i32), r: f64) -> Vec<(i32, i32)> {
    let ring = |n: usize, radius: &dyn Fn(usize) -> f64, turn: f64| -> Vec<(i32, i32)> {
        (0..n)
            .map(|i| {
                let a = turn + i as f64 * std::f64::consts::TAU / n as f64;
                let q = radius(i);
                (
                    cx + (q * a.cos()).round() as i32,
                    cy - (q * a.sin()).round() as i32,
                )
            })
            .collect()
    };
    let up = std::f64::consts::FRAC_PI_2;
    match shape % 8 {
        0 => ring(16, &|_| r, 0.0),
        1 => ring(4, &|_| r * 1.2, std::f64::consts::FRAC_PI_4),
        2 => ring(3, &|_| r * 1.3, up),
        3 => ring(4, &|_| r * 1.3, 0.0),
        4 => ring(3, &|_| r * 1.3, -up),
        5 => ring(5, &|_| r * 1.15, up),
        6 => ring(10, &|i| if i % 2 == 0 { r * 1.5 } else { r * 0.65 }, up),
        _ => ring(6, &|_| r * 1.1, 0.0),
    }
}

/// Draws one marker of series `s` at pixel `at` on `area`: filled (ours), half-filled
/// (re-ranked) or hollow (reference).
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Series,
    at: (i32, i32),
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let color = family_color(s.family);
    let outline = marker_outline(s.variant, at, 4.5);
    let fill = if s.reference {
        WHITE.to_rgba()
    } else if s.reranked {
        color.mix(0.35)
    } else {
        color.to_rgba()
    };
    area.draw(&Polygon::new(outline.clone(), fill.filled()))?;
    let mut closed = outline;
    closed.push(closed[0]);
    area.draw(&PathElement::new(closed, color.stroke_width(2)))
}

/// The top of the recall axis: 1 (and a little room); when every point is below 0.45
/// (coarse codes, a few probes) a little above the highest one instead, on a multiple
/// of 0.05, so the curves do not lie flat along the bottom of the plot.
fn recall_axis_top(series: &[Series]) -> f64 {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0f64, f64::max);
    if top < 0.45 {
        ((top * 1.15 / 0.05).ceil() * 0.05).max(0.1)
    } else {
        1.02
    }
}

/// Canvas size and the width of the plot (the legend takes the rest, on the right).
const CANVAS: (u32, u32) = (1280, 720);
const PLOT_WIDTH: u32 = 880;
/// Tick label size in pixels.
const TICK_FONT: f64 = 14.0;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
    series: &[Series],
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| *x > 0.0 && x.is_finite());
    let (mut lo, mut hi) = xs.fold((f64::INFINITY, 0f64), |(l, h), x| (l.min(x), h.max(x)));
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    let (lo, hi) = (lo / 1.3, hi * 1.3);
    let y_hi = recall_axis_top(series);
    let body = root.titled(chart.title, ("sans-serif", 20)).map_err(e)?;
    let (plot_area, legend_area) = body.split_horizontally(PLOT_WIDTH);
    let (margin, y_area) = (12u32, 60u32);
    let axis_px = f64::from(PLOT_WIDTH - y_area - 2 * margin);
    let ticks = log_ticks(lo, hi, axis_px, TICK_FONT, chart.ticks);
    let mut c = ChartBuilder::on(&plot_area)
        .margin(margin)
        .x_label_area_size(45)
        .y_label_area_size(y_area)
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(ticks), 0f64..y_hi)
        .map_err(e)?;
    let kind = chart.ticks;
    c.configure_mesh()
        .x_label_formatter(&|x| tick_label(*x, kind))
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", 15))
        .y_labels(11)
        .y_max_light_lines(1)
        .draw()
        .map_err(e)?;
    // The frontier of our points (hollow reference points are not ours), under them.
    let ours: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| !s.reference)
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let front = pareto(&ours, chart.larger_x_is_better);
    let front_style = RGBColor(160, 160, 160).stroke_width(7);
    if front.len() > 1 {
        c.draw_series(LineSeries::new(front, front_style))
            .map_err(e)?;
    }
    for s in series {
        let color = family_color(s.family);
        let width = if s.reference { 1 } else { 2 };
        if s.points.len() > 1 {
            if s.reranked || s.reference {
                c.draw_series(DashedLineSeries::new(
                    s.points.clone(),
                    6,
                    4,
                    color.stroke_width(width),
                ))
                .map_err(e)?;
            } else {
                c.draw_series(LineSeries::new(s.points.clone(), color.stroke_width(width)))
                    .map_err(e)?;
            }
        }
    }
    // Point labels (swept values) that would overlap one already written are left out.
    let mut written: Vec<(i32, i32, i32)> = Vec::new();
    for s in series {
        let color = family_color(s.family);
        for (i, p) in s.points.iter().enumerate() {
            let at = c.backend_coord(p);
            draw_marker(&root, s, at).map_err(e)?;
            if let Some(t) = s.point_labels.get(i) {
                let (x, y) = (at.0 + 8, at.1 - 12);
                let w = (t.chars().count() as f64 * CHAR_EM * 11.0).ceil() as i32;
                if written
                    .iter()
                    .any(|&(a, b, wa)| x < a + wa + 2 && a < x + w + 2 && (y - b).abs() < 12)
                {
                    continue;
                }
                written.push((x, y, w));
                let style = ("sans-serif", 11).into_font().color(&color);
                root.draw(&Text::new(t.clone(), (x, y), style)).map_err(e)?;
            }
        }
    }
    draw_legend(&legend_area, series, front_style).map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// The legend, beside the plot: the frontier, then one line per series, grouped by
/// family (colour) with the series' marker.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
    front_style: ShapeStyle,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut order: Vec<&Series> = series.iter().collect();
    let rank = |f: &str| {
        FAMILIES
            .iter()
            .position(|(n, _)| *n == f)
            .unwrap_or(FAMILIES.len())
    };
    order.sort_by_key(|s| (rank(s.family), s.reference));
    let (_, h) = area.dim_in_pixel();
    let row = ((h as i32 - 40) / (order.len() as i32 + 1)).clamp(8, 22);
    let font = (row - 6).clamp(9, 14);
    let (x0, mut y) = (12, 30);
    area.draw(&PathElement::new(
        vec![(x0 - 6, y), (x0 + 10, y)],
        front_style,
    ))?;
    area.draw(&Text::new(
        "Pareto frontier (vecquant)",
        (x0 + 22, y - font / 2),
        ("sans-serif", font),
    ))?;
    for s in order {
        y += row;
        draw_marker(area, s, (x0 + 2, y))?;
        let style = ("sans-serif", font)
            .into_font()
            .color(&family_color(s.family));
        area.draw(&Text::new(s.label.clone(), (x0 + 22, y - font / 2), style))?;
    }
    Ok(())
}

/// Draws `series` and writes `stem.svg` and `stem.png` (1280 × 720: the plot, and the
/// legend to its right).
pub fn write_chart(stem: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let (w, h) = CANVAS;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        draw(root, chart, series).map_err(|m| Error::param("plot", m))?;
    }
    let svg_path = stem.with_extension("svg");
    write_file_atomic(&svg_path, svg.as_bytes())?;
    let png = rasterise(&svg, w, h)?;
    write_file_atomic(stem.with_extension("png"), &png)
}

/// SVG → PNG with resvg and the embedded font.
fn rasterise(svg: &str, w: u32, h: u32) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    {
        let db = opt.fontdb_mut();
        db.load_font_data(FONT.to_vec());
        db.set_sans_serif_family("DejaVu Sans Mono");
        db.set_serif_family("DejaVu Sans Mono");
        db.set_monospace_family("DejaVu Sans Mono");
    }
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::param("plot", format!("cannot parse the SVG: {e}")))?;
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| Error::param("plot", "cannot allocate the image"))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::param("plot", format!("cannot encode the PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let pts = [(1.0, 0.5), (2.0, 0.4), (3.0, 0.9), (4.0, 0.8), (0.5, 0.1)];
        // Smaller x better (bytes): (0.5,.1), (1,.5), (3,.9).
        assert_eq!(
            pareto(&pts, false),
            vec![(0.5, 0.1), (1.0, 0.5), (3.0, 0.9)]
        );
        // Larger x better (QPS): (3,.9), (4,.8).
        assert_eq!(pareto(&pts, true), vec![(3.0, 0.9), (4.0, 0.8)]);
        // Equal x (an nprobe sweep at one code size): only the best recall there.
        let sweep = [(16.0, 0.02), (16.0, 0.12), (16.0, 0.06), (64.0, 0.5)];
        assert_eq!(pareto(&sweep, false), vec![(16.0, 0.12), (64.0, 0.5)]);
        assert_eq!(pareto(&sweep, true), vec![(64.0, 0.5)]);
    }

    fn series(label: &str, points: Vec<(f64, f64)>, reference: bool) -> Series {
        let spec = label.trim_start_matches("faiss ");
        Series {
            label: label.into(),
            family: family_of(spec),
            variant: 0,
            points,
            point_labels: Vec::new(),
            reference,
            reranked: false,
        }
    }

    /// The recall axis spans 0–1 once any point (a reference's too) reaches 0.45;
    /// below that it ends on the next 0.05 past 1.15× the highest point.
    #[test]
    fn recall_axis_fits_low_curves_and_keeps_0_to_1_otherwise() {
        let low = series("IVF256,PQ32x4fs", vec![(1e5, 0.02), (2e4, 0.1219)], false);
        let faiss = series("faiss IVF256,PQ32x4fs", vec![(1e5, 0.118)], true);
        let top = recall_axis_top(&[low.clone(), faiss.clone()]);
        assert!((top - 0.15).abs() < 1e-12, "{top}");
        assert!((recall_axis_top(&[faiss]) - 0.15).abs() < 1e-12);
        assert_eq!(
            recall_axis_top(&[series("SQ4", vec![(1e4, 0.001)], false)]),
            0.1
        );
        let high = series("faiss SQ8", vec![(1e4, 0.45)], true);
        assert_eq!(recall_axis_top(&[low, high]), 1.02);
        assert_eq!(recall_axis_top(&[]), 0.1);
    }

    /// Issue 17 item 11: a label at every power of two on the bytes axis.
    #[test]
    fn item11_byte_ticks_at_every_power_of_two_in_range() {
        let t = log_ticks(
            16.0 / 1.3,
            640.0 * 1.3,
            796.0,
            TICK_FONT,
            Ticks::PowersOfTwo,
        );
        assert_eq!(t, [16.0, 32.0, 64.0, 128.0, 256.0, 512.0]);
        let t = log_ticks(3.0, 5000.0, 796.0, TICK_FONT, Ticks::PowersOfTwo);
        assert_eq!(
            t,
            [
                4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0
            ]
        );
        let labels: Vec<String> = t
            .iter()
            .map(|&x| tick_label(x, Ticks::PowersOfTwo))
            .collect();
        assert_eq!(labels[..3], ["4", "8", "16"]);
        assert_eq!(labels[8..], ["1Ki", "2Ki", "4Ki"]);
        // Too many to fit: thinned, never touching.
        let t = log_ticks(1.0, 1e12, 300.0, TICK_FONT, Ticks::PowersOfTwo);
        assert!(t.len() >= 2 && labels_fit(&t, 1.0, 1e12, 300.0, TICK_FONT, Ticks::PowersOfTwo));
    }

    /// Issue 17 item 11: QPS labels never touch ("90k100k").
    #[test]
    fn item11_qps_tick_labels_never_touch() {
        let d = Ticks::Decimal;
        assert_eq!(tick_label(90_000.0, d), "90k");
        assert_eq!(tick_label(100_000.0, d), "100k");
        assert_eq!(tick_label(1_500_000.0, d), "1.5M");
        assert_eq!(tick_label(500.0, d), "500");
        // The README's range: 90k and 100k side by side would touch; the chosen ticks
        // do not, and are 1-2-5.
        let (lo, hi) = (320.0 / 1.3, 442_004.0 * 1.3);
        assert!(!labels_fit(
            &[90_000.0, 100_000.0],
            lo,
            hi,
            796.0,
            TICK_FONT,
            d
        ));
        let t = log_ticks(lo, hi, 796.0, TICK_FONT, d);
        assert!(labels_fit(&t, lo, hi, 796.0, TICK_FONT, d), "{t:?}");
        assert!(t.contains(&1000.0) && t.contains(&100_000.0) && !t.contains(&90_000.0));
        assert!(t.len() >= 6, "{t:?}");
        for (lo, hi, px) in [(50.0, 80.0, 796.0), (1.0, 1e9, 796.0), (3e3, 4e5, 200.0)] {
            let t = log_ticks(lo, hi, px, TICK_FONT, d);
            assert!(labels_fit(&t, lo, hi, px, TICK_FONT, d), "{lo} {hi}: {t:?}");
            assert!(
                t.iter().all(|x| (lo..=hi).contains(x)) && !t.is_empty(),
                "{t:?}"
            );
        }
    }

    /// Issue 17 item 11: one colour per family; variants of a family share it.
    #[test]
    fn item11_each_spec_maps_to_its_familys_colour() {
        for (spec, family) in [
            ("Flat", "Flat"),
            ("SQ8", "SQ"),
            ("SQ4lm", "SQ"),
            ("SQ8u", "SQ"),
            ("PQ16", "PQ"),
            ("PQ32x4fs", "PQ"),
            ("OPQ16,PQ16", "OPQ,PQ"),
            ("IVF256,PQ32x4fs", "IVF"),
            ("IVF64,Flat", "IVF"),
            ("HNSW32", "HNSW"),
            ("HNSW32,SQ8", "HNSW"),
            ("hnswlib32", "HNSW"),
            ("RaBitQ4", "RaBitQ"),
        ] {
            assert_eq!(family_of(spec), family, "{spec}");
        }
        let colors: Vec<RGBColor> = FAMILIES.iter().map(|(f, _)| family_color(f)).collect();
        for (i, a) in colors.iter().enumerate() {
            for b in &colors[i + 1..] {
                let d = (a.0 as i32 - b.0 as i32).abs()
                    + (a.1 as i32 - b.1 as i32).abs()
                    + (a.2 as i32 - b.2 as i32).abs();
                assert!(d > 90, "{a:?} and {b:?} are too close");
            }
        }
        assert_eq!(family_color("SQ"), family_color(family_of("SQ4u")));
    }

    #[test]
    fn writes_svg_and_a_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let s = vec![
            series("SQ8", vec![(128.0, 0.97)], false),
            series(
                "IVF256,PQ32x4fs",
                vec![(20.0, 0.2), (20.0, 0.4), (20.0, 0.5)],
                false,
            ),
            series("faiss SQ8", vec![(128.0, 0.96)], true),
        ];
        let chart = Chart {
            title: "recall vs memory",
            x_label: "bytes per vector",
            y_label: "10-recall@10",
            larger_x_is_better: false,
            ticks: Ticks::PowersOfTwo,
        };
        let stem = dir.path().join("chart");
        write_chart(&stem, &chart, &s).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("bytes per vector") && svg.contains("faiss SQ8"));
        // Item 11: the legend is outside the plot, to its right.
        let at = svg.find("\nIVF256,PQ32x4fs\n").expect("legend entry");
        let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
        let x: f64 = tag
            .split("x=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x > f64::from(PLOT_WIDTH), "legend text at x = {x}: {tag}");
        // Item 11: the log axis is labelled at 16, 32, 64 and 128.
        for t in ["\n16\n", "\n32\n", "\n64\n", "\n128\n"] {
            assert!(svg.contains(t), "no tick label {t}");
        }
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // Text was rasterised with the embedded font: the caption band (above the plot
        // area, which holds nothing but the title) has dark glyph pixels, and the band
        // below the title's baseline margin has none left of the chart.
        let img = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!((img.width(), img.height()), CANVAS);
        let dark = |y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    let p = img.pixel(x, y).unwrap();
                    p.red() < 100 && p.green() < 100 && p.blue() < 100
                })
                .count()
        };
        assert!(
            dark(0, 40) > 200,
            "no title glyphs: {} dark pixels",
            dark(0, 40)
        );
    }
}
