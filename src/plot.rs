//! PNG line charts (e.g. accuracy or loss per round).
//!
//! This module owns all plotting: it renders with `plotters`' pure-Rust bitmap
//! backend and a DejaVu Sans font bundled into the binary (registered once per
//! process under [`FONT`]), so no system libraries (fontconfig, freetype) or
//! installed fonts are needed.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};
use plotters::data::float::pretty_print_float;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// One named line of (x, y) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Font family name the bundled font is registered under. It is the name
/// plotters uses for its default text too, so every label uses the bundled font.
const FONT: &str = "sans-serif";
const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;
/// Line colours, cycled through for series beyond the list.
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// Registers the bundled font once per process.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok()
            && register_font(FONT, FontStyle::Bold, dejavu::sans::bold()).is_ok()
    });
    if ok {
        Ok(())
    } else {
        bail!("could not load the bundled DejaVu Sans font")
    }
}

/// `(min, max)` widened by a small margin; never empty.
fn padded(min: f64, max: f64, frac: f64) -> (f64, f64) {
    let span = max - min;
    if span > 0.0 {
        (min - span * frac, max + span * frac)
    } else {
        let pad = if min == 0.0 { 1.0 } else { min.abs() * 0.1 };
        (min - pad, max + pad)
    }
}

/// Draws `series` as a line chart into an 800x500 PNG at `path`, with a title,
/// axis labels and a legend (always, one entry per series). The x range is the
/// data's; the y range is the data's with a 5% margin. Non-finite points are
/// skipped; if no finite point remains at all, this returns an error.
/// The PNG is drawn under a temporary name and renamed into place, so a failed write (a full
/// disk) leaves no partial file.
pub fn line_chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> anyhow::Result<()> {
    // plotters picks the format from the extension: keep `.png` last.
    let tmp = path.with_extension("tmp.png");
    let drawn = draw(&tmp, title, x_label, y_label, series).and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if drawn.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    drawn.with_context(|| format!("cannot plot {:?} to {}", title, path.display()))
}

fn draw(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> anyhow::Result<()> {
    let lines: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect())
        .collect();
    let all = || lines.iter().flatten();
    if all().next().is_none() {
        bail!("nothing to plot: no finite points in {} series", series.len());
    }
    let fold = |f: fn(&(f64, f64)) -> f64| {
        all().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x_min, x_max) = fold(|p| p.0);
    let (y_min, y_max) = fold(|p| p.1);
    let (x_lo, x_hi) = padded(x_min, x_max, 0.0);
    let (y_lo, y_hi) = padded(y_min, y_max, 0.05);
    // A span past f64 (values near ±1.8e308, from a damaged report) would make the axis
    // infinite, and plotters then never finishes laying it out.
    if ![x_hi - x_lo, y_hi - y_lo].iter().all(|span| span.is_finite()) {
        bail!("values too large to plot: x from {x_min} to {x_max}, y from {y_min} to {y_max}");
    }

    ensure_font()?;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing failed: {e}");
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, FontDesc::new(FontFamily::Name(FONT), 26.0, FontStyle::Bold))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .axis_desc_style((FONT, 18))
        .label_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(200, 200, 200))
        .x_label_formatter(&|v| pretty_print_float(*v, true))
        .y_label_formatter(&|v| pretty_print_float(*v, true))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (s, pts)) in series.iter().zip(&lines).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(|e| err(&e))?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if pts.len() == 1 {
            // A lone point draws no line segment; mark it so it is visible.
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
        }
    }
    // Put the legend in the corner the lines end away from: below rising curves, above
    // falling ones.
    let ends: Vec<f64> = lines.iter().filter_map(|p| p.last().map(|&(_, y)| y)).collect();
    let end_mean = ends.iter().sum::<f64>() / ends.len().max(1) as f64;
    let position =
        if end_mean > (y_lo + y_hi) / 2.0 { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

    /// A fresh temp folder unique to this process and test; removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("dainet-plot-{}-{}", std::process::id(), name));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> Vec<Series> {
        let curve = |label: &str, top: f64, rate: f64| Series {
            label: label.to_string(),
            points: (0..50)
                .map(|r| {
                    let t = r as f64;
                    (t, 0.1 + (top - 0.1) * (1.0 - (-t / rate).exp()))
                })
                .collect(),
        };
        vec![curve("federated (FedAvg)", 0.9, 8.0), curve("local only", 0.7, 5.0)]
    }

    fn assert_png(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes[..8], PNG_SIGNATURE);
        assert!(bytes.len() > 4096, "PNG too small: {} bytes", bytes.len());
    }

    #[test]
    fn writes_png_with_two_series() {
        let dir = TempDir::new("two");
        let path = dir.0.join("acc.png");
        line_chart(&path, "Accuracy", "round", "accuracy", &sample()).unwrap();
        assert_png(&path);
    }

    #[test]
    fn skips_non_finite_points_and_handles_edge_cases() {
        let dir = TempDir::new("edge");
        let series = vec![
            Series {
                label: "with gaps".into(),
                points: vec![(0.0, 1.0), (1.0, f64::NAN), (f64::INFINITY, 2.0), (2.0, 3.0)],
            },
            Series { label: "empty".into(), points: vec![] },
        ];
        let path = dir.0.join("gaps.png");
        line_chart(&path, "Gaps", "x", "y", &series).unwrap();
        assert_png(&path);

        // One point: zero-width ranges must still work.
        let one = [Series { label: "one".into(), points: vec![(3.0, 0.5)] }];
        let path = dir.0.join("one.png");
        line_chart(&path, "One", "x", "y", &one).unwrap();
        assert_png(&path);
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let dir = TempDir::new("nan");
        let path = dir.0.join("nan.png");
        let nan = [Series { label: "nan".into(), points: vec![(0.0, f64::NAN), (f64::NAN, 1.0)] }];
        let msg = format!("{:#}", line_chart(&path, "t", "x", "y", &nan).unwrap_err());
        assert!(msg.contains("nothing to plot"), "{msg}");
        assert!(msg.contains("nan.png"), "{msg}");
        assert!(line_chart(&path, "t", "x", "y", &[]).is_err());
        assert!(!path.exists());
    }

    /// `dainet compare` on a report whose values span all of f64 hung in plotters.
    #[test]
    fn values_spanning_all_of_f64_are_an_error_not_a_hang() {
        let dir = TempDir::new("huge");
        let path = dir.0.join("huge.png");
        let huge = [Series { label: "huge".into(), points: vec![(0.0, -1e308), (1e308, 1e308)] }];
        let msg = format!("{:#}", line_chart(&path, "t", "x", "y", &huge).unwrap_err());
        assert!(msg.contains("values too large to plot"), "{msg}");
        assert!(!path.exists());
    }

    #[test]
    fn unwritable_path_names_the_path() {
        let dir = TempDir::new("bad");
        let path = dir.0.join("missing-dir").join("x.png");
        let msg = format!("{:#}", line_chart(&path, "t", "x", "y", &sample()).unwrap_err());
        assert!(msg.contains("missing-dir"), "{msg}");
    }
}
