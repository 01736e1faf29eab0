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
    /// (x, y) points, in sweep order.
    pub points: Vec<(f64, f64)>,
    /// Drawn hollow and dashed (a reference library's points).
    pub reference: bool,
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
}

/// The Pareto-optimal points of `pts` (maximising y, and x in the chosen direction),
/// sorted by x.
pub fn pareto(pts: &[(f64, f64)], larger_x_is_better: bool) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite() && p.0 > 0.0)
        .collect();
    // Walk from the best x to the worst, keeping points that improve recall.
    v.sort_by(|a, b| {
        let o = a.0.total_cmp(&b.0);
        if larger_x_is_better { o.reverse() } else { o }
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

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    chart: &Chart,
    series: &[Series],
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let xs = all
        .iter()
        .map(|p| p.0)
        .filter(|x| *x > 0.0 && x.is_finite());
    let (mut lo, mut hi) = xs.fold((f64::INFINITY, 0f64), |(l, h), x| (l.min(x), h.max(x)));
    if !lo.is_finite() {
        (lo, hi) = (1.0, 10.0);
    }
    let (lo, hi) = (lo / 1.3, hi * 1.3);
    let mut c = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .right_y_label_area_size(0)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.02f64)
        .map_err(e)?;
    c.configure_mesh()
        .x_labels(12)
        .x_label_formatter(&|x| {
            if *x >= 10_000.0 {
                format!("{:.0}k", x / 1000.0)
            } else {
                format!("{x:.0}")
            }
        })
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(e)?;
    let ours: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| !s.reference)
        .flat_map(|s| s.points.iter().copied())
        .collect();
    let front = pareto(&ours, chart.larger_x_is_better);
    if front.len() > 1 {
        c.draw_series(LineSeries::new(front.clone(), BLACK.stroke_width(3)))
            .map_err(e)?
            .label("vecquant Pareto frontier")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    }
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = if s.reference {
            color.stroke_width(1)
        } else {
            color.stroke_width(2)
        };
        let pts = s.points.clone();
        c.draw_series(LineSeries::new(pts.clone(), style))
            .map_err(e)?
            .label(&s.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if s.reference {
            c.draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, 6, color.stroke_width(2))),
            )
            .map_err(e)?;
        } else {
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(e)?;
        }
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Draws `series` and writes `stem.svg` and `stem.png` (1000 × 700).
pub fn write_chart(stem: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    let (w, h) = (1000u32, 700u32);
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
    }

    #[test]
    fn writes_svg_and_a_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let s = vec![
            Series {
                label: "SQ8".into(),
                points: vec![(128.0, 0.97)],
                reference: false,
            },
            Series {
                label: "IVF256,PQ32x4fs".into(),
                points: vec![(20.0, 0.2), (20.0, 0.4), (20.0, 0.5)],
                reference: false,
            },
            Series {
                label: "faiss SQ8".into(),
                points: vec![(128.0, 0.96)],
                reference: true,
            },
        ];
        let chart = Chart {
            title: "recall vs memory",
            x_label: "bytes per vector",
            y_label: "10-recall@10",
            larger_x_is_better: false,
        };
        let stem = dir.path().join("chart");
        write_chart(&stem, &chart, &s).unwrap();
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("bytes per vector") && svg.contains("faiss SQ8"));
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // Text was rasterised with the embedded font: the caption band (above the plot
        // area, which holds nothing but the title) has dark glyph pixels, and the band
        // below the title's baseline margin has none left of the chart.
        let img = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
        assert_eq!((img.width(), img.height()), (1000, 700));
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
