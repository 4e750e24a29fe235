//! Strip plots of per-seed values: the V2 metrics are bimodal, so tables of
//! means alone mislead; the figure shows every seed.

use super::common::ReproduceOptions;
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Per-seed values of one experiment and block.
pub struct Block {
    pub label: String,
    pub control: Vec<f64>,
    pub treatment: Vec<f64>,
    /// The permutation test's p and Cohen's d of the block (for the figure).
    pub p: Option<f64>,
    pub d: f64,
}

const PANEL_W: u32 = 900;
const PANEL_H: u32 = 260;

/// Writes a figure as `<stem>.svg` and `<stem>.png` (rendered from the same
/// SVG at 2× scale, with the DejaVu Sans font built into the binary, so it
/// looks the same on any machine).
pub fn write_figure(run: &emorl_log::RunDir, stem: &str, svg: &str) -> Result<()> {
    let png = png_of(svg, 2.0)?;
    run.write_atomic(std::path::Path::new(&format!("{stem}.svg")), svg.as_bytes())?;
    run.write_atomic(std::path::Path::new(&format!("{stem}.png")), &png)?;
    Ok(())
}

/// `svg` rasterised at `scale` onto white and encoded as PNG.
pub fn png_of(svg: &str, scale: f32) -> Result<Vec<u8>> {
    use resvg::usvg::fontdb::Source;
    use resvg::{tiny_skia, usvg};
    use std::sync::Arc;
    let mut options = usvg::Options::default();
    {
        let fonts = options.fontdb_mut();
        for font in [
            dejavu::sans::regular(),
            dejavu::sans::bold(),
            dejavu::sans::oblique(),
        ] {
            fonts.load_font_source(Source::Binary(Arc::new(font)));
        }
        fonts.set_sans_serif_family("DejaVu Sans");
        fonts.set_serif_family("DejaVu Sans");
        fonts.set_monospace_family("DejaVu Sans");
    }
    options.font_family = "DejaVu Sans".into();
    let tree = usvg::Tree::from_str(&paint_opacity(svg), &options)
        .map_err(|e| anyhow!("figure SVG: {e}"))?;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or_else(|| anyhow!("figure size"))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("figure of {}x{} pixels", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    encode_rgb(&pixmap).map_err(|e| anyhow!("encoding the PNG: {e}"))
}

/// plotters marks a translucent shape with `opacity`, which resvg draws
/// through a layer of its own (a pixmap per dot and grid line, the
/// figure's slowest part). Its shapes have a fill or a stroke, never both,
/// so `fill-opacity` and `stroke-opacity` draw them the same, directly.
fn paint_opacity(svg: &str) -> String {
    let mut parts = svg.split(" opacity=\"");
    let mut out = String::with_capacity(svg.len() * 2);
    out.push_str(parts.next().unwrap_or_default());
    for part in parts {
        let (value, rest) = part.split_at(part.find('"').unwrap_or(0));
        out.push_str(&format!(
            " fill-opacity=\"{value}\" stroke-opacity=\"{value}"
        ));
        out.push_str(rest);
    }
    out
}

/// A pixmap drawn on an opaque background as an RGB PNG, row by row (its
/// alpha is 255 throughout, so the colours are the pixmap's as they are).
fn encode_rgb(pixmap: &resvg::tiny_skia::Pixmap) -> Result<Vec<u8>, png::EncodingError> {
    use std::io::Write;
    let mut data = Vec::new();
    let mut encoder = png::Encoder::new(&mut data, pixmap.width(), pixmap.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Flat colours: unfiltered rows compress fastest, and smallest.
    encoder.set_filter(png::FilterType::NoFilter);
    let mut writer = encoder.write_header()?;
    let mut stream = writer.stream_writer()?;
    let mut row = vec![0; pixmap.width() as usize * 3];
    for line in pixmap.data().chunks_exact(pixmap.width() as usize * 4) {
        for (rgb, rgba) in row.chunks_exact_mut(3).zip(line.chunks_exact(4)) {
            rgb.copy_from_slice(&rgba[..3]);
        }
        stream.write_all(&row)?;
    }
    stream.finish()?;
    writer.finish()?;
    Ok(data)
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure: {e:?}")
}

/// The label of the column at tick `x` (columns sit at 0, 1, 2, ...;
/// ticks between them get none).
fn column_label(labels: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        labels.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Deterministic jitter in [-0.3, 0.3] from an index (no RNG needed).
fn jitter(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (x as f64 / (1u64 << 24) as f64 - 0.5) * 0.6
}

/// One panel of [`distributions`]: an experiment's metric per seed block.
pub struct DistributionPanel<'a> {
    pub title: String,
    pub control: &'a str,
    pub treatment: &'a str,
    /// The metric, for the y axis.
    pub y_label: String,
    pub blocks: &'a [Block],
    /// Column labels, two per block (default: arm label and block label);
    /// when given, the caption is the title alone.
    pub columns: Option<Vec<String>>,
}

/// The figure's title line for a reproduction's options.
pub fn distributions_title(o: &ReproduceOptions) -> String {
    format!(
        "Per-seed values, {} seeds per block, rng {} (dots: seeds; bars: means)",
        o.seeds, o.rng
    )
}

/// One panel per experiment; per block, control and treatment side by side,
/// each seed a dot, the mean a bar.
pub fn distributions(panels_in: &[DistributionPanel<'_>], heading: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let height = PANEL_H * panels_in.len() as u32 + 40;
        let root = SVGBackend::with_string(&mut svg, (PANEL_W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (title, body) = root.split_vertically(40);
        title
            .titled(heading, ("sans-serif", 18))
            .map_err(draw_err)?;
        let areas = body.split_evenly((panels_in.len(), 1));
        for (p, panel) in panels_in.iter().zip(areas.iter()) {
            let exp_blocks = p.blocks;
            let values = exp_blocks
                .iter()
                .flat_map(|b| b.control.iter().chain(&b.treatment))
                .copied();
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            let pad = ((hi - lo) * 0.08).max(0.05);
            let n_cols = exp_blocks.len() * 2;
            let tests: Vec<String> = exp_blocks
                .iter()
                .map(|b| {
                    let p = b.p.map_or("–".to_string(), |p| format!("{p:.3}"));
                    if exp_blocks.len() > 1 {
                        format!("{}: p = {p}, d = {:.2}", b.label, b.d)
                    } else {
                        format!("p = {p}, d = {:.2}", b.d)
                    }
                })
                .collect();
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    // Explicit column labels carry their own statistics.
                    if p.columns.is_some() {
                        p.title.clone()
                    } else {
                        format!("{} ({})", p.title, tests.join("; "))
                    },
                    ("sans-serif", 14),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..(n_cols as f64 - 0.5), (lo - pad)..(hi + pad))
                .map_err(draw_err)?;
            let labels: Vec<String> = p.columns.clone().unwrap_or_else(|| {
                exp_blocks
                    .iter()
                    .flat_map(|b| {
                        [
                            format!("{} {}", p.control, b.label),
                            format!("{} {}", p.treatment, b.label),
                        ]
                    })
                    .collect()
            });
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_desc(p.y_label.as_str())
                .x_labels(n_cols)
                .x_label_formatter(&|x| column_label(&labels, *x))
                .draw()
                .map_err(draw_err)?;
            for (b, block) in exp_blocks.iter().enumerate() {
                for (arm, vals, color) in
                    [(0usize, &block.control, BLUE), (1, &block.treatment, RED)]
                {
                    let x0 = (2 * b + arm) as f64;
                    chart
                        .draw_series(vals.iter().enumerate().map(|(i, v)| {
                            Circle::new((x0 + jitter(i), *v), 3, color.mix(0.55).filled())
                        }))
                        .map_err(draw_err)?;
                    let m = emorl_core::numeric::mean(vals);
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(x0 - 0.4, m), (x0 + 0.4, m)],
                            BLACK.stroke_width(2),
                        )))
                        .map_err(draw_err)?;
                }
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// One panel of [`values`]: a metric, one column per cell.
pub struct ValuesPanel {
    pub title: String,
    /// `(label, per-seed values, whether it is the control)` per column.
    pub columns: Vec<(String, Vec<f64>, bool)>,
}

/// One panel per metric; per column, each seed a dot, the mean a bar and
/// its 95% interval (mean ± 2 standard errors, 1.96 above 30 values) a
/// whisker; control columns in blue, the others in red.
pub fn values(panels: &[ValuesPanel], heading: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let widest = panels.iter().map(|p| p.columns.len()).max().unwrap_or(1);
        let width = PANEL_W.max(90 * widest as u32 + 120);
        let height = PANEL_H * panels.len().max(1) as u32 + 40;
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (title, body) = root.split_vertically(40);
        title
            .titled(heading, ("sans-serif", 16))
            .map_err(draw_err)?;
        let areas = body.split_evenly((panels.len().max(1), 1));
        for (panel, area) in panels.iter().zip(areas.iter()) {
            let summaries: Vec<emorl_stats::ArmSummary> = panel
                .columns
                .iter()
                .map(|(_, v, _)| emorl_stats::ArmSummary::of(v))
                .collect();
            let finite = |x: f64| x.is_finite().then_some(x);
            let all = panel
                .columns
                .iter()
                .flat_map(|(_, v, _)| v.iter().copied())
                .chain(summaries.iter().flat_map(|s| [s.ci_low, s.ci_high]))
                .filter_map(finite);
            let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.1)
                .max(hi.abs().max(lo.abs()) * 1e-3)
                .max(1e-9);
            let n = panel.columns.len().max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title.as_str(), ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..(n as f64 - 0.5), (lo - pad)..(hi + pad))
                .map_err(draw_err)?;
            let labels: Vec<String> = panel.columns.iter().map(|c| c.0.clone()).collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n)
                .x_label_formatter(&|x| column_label(&labels, *x))
                .draw()
                .map_err(draw_err)?;
            for (i, ((_, vals, control), s)) in panel.columns.iter().zip(&summaries).enumerate() {
                let x0 = i as f64;
                let color = if *control { BLUE } else { RED };
                chart
                    .draw_series(vals.iter().enumerate().map(|(j, v)| {
                        Circle::new((x0 + jitter(j), *v), 3, color.mix(0.5).filled())
                    }))
                    .map_err(draw_err)?;
                let mut lines = vec![vec![(x0 - 0.35, s.mean), (x0 + 0.35, s.mean)]];
                if s.ci_low.is_finite() && s.ci_high.is_finite() {
                    lines.push(vec![(x0, s.ci_low), (x0, s.ci_high)]);
                    lines.push(vec![(x0 - 0.12, s.ci_low), (x0 + 0.12, s.ci_low)]);
                    lines.push(vec![(x0 - 0.12, s.ci_high), (x0 + 0.12, s.ci_high)]);
                }
                chart
                    .draw_series(
                        lines
                            .into_iter()
                            .map(|l| PathElement::new(l, BLACK.stroke_width(2))),
                    )
                    .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// One line of a learning-curve panel: mean and a band per episode.
pub struct Curve {
    pub label: String,
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

/// A titled panel of curves sharing the episode axis.
pub struct CurvePanel {
    pub title: String,
    /// What the x axis counts ("episode", "RL update").
    pub x_label: String,
    /// What the y axis shows.
    pub y_label: String,
    /// The metric's possible range: bands (and the axis) are clipped to it.
    pub range: (f64, f64),
    pub curves: Vec<Curve>,
}

/// Width of the legend strip right of each panel (outside the data).
const LEGEND_W: u32 = 190;

/// Stacked learning-curve panels (mean line, shaded band) as an SVG string:
/// labelled axes, integer ticks on the x axis, bands clipped to the
/// metric's range, the legend in a strip beside the data.
pub fn learning_curves(panels: &[CurvePanel]) -> Result<String> {
    const COLORS: [RGBColor; 4] = [BLUE, RED, RGBColor(0, 140, 70), RGBColor(150, 90, 0)];
    let mut svg = String::new();
    {
        let height = (PANEL_H + 40) * panels.len().max(1) as u32;
        let root =
            SVGBackend::with_string(&mut svg, (PANEL_W + LEGEND_W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        for (panel, area) in panels
            .iter()
            .zip(root.split_evenly((panels.len().max(1), 1)).iter())
        {
            let (plot, legend) = area.split_horizontally(PANEL_W);
            let (min, max) = panel.range;
            let clip = |v: f64| v.clamp(min, max);
            let len = panel.curves.iter().map(|c| c.mean.len()).max().unwrap_or(0);
            let (lo, hi) = panel
                .curves
                .iter()
                .flat_map(|c| c.low.iter().chain(&c.high).chain(&c.mean))
                .filter(|v| v.is_finite())
                .map(|v| clip(*v))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(v), h.max(v))
                });
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo, hi)
            } else {
                (0.0, 1.0)
            };
            let pad = (hi - lo) * 0.05;
            let (y0, y1) = ((lo - pad).max(min), (hi + pad).min(max));
            // Episodes count from 1; the last one is a tick of its own.
            let last = len.max(1) as f64;
            let mut chart = ChartBuilder::on(&plot)
                .caption(&panel.title, ("sans-serif", 15))
                .margin(8)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(1f64..last.max(2.0), y0..y1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .x_labels(len.clamp(2, 11))
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-9 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .draw()
                .map_err(draw_err)?;
            for (i, c) in panel.curves.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let at = |e: usize| (e + 1) as f64;
                let band: Vec<(f64, f64)> = c
                    .high
                    .iter()
                    .enumerate()
                    .map(|(e, v)| (at(e), clip(*v)))
                    .chain(
                        c.low
                            .iter()
                            .enumerate()
                            .rev()
                            .map(|(e, v)| (at(e), clip(*v))),
                    )
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.15).filled(),
                    )))
                    .map_err(draw_err)?;
                chart
                    .draw_series(LineSeries::new(
                        c.mean.iter().enumerate().map(|(e, v)| (at(e), clip(*v))),
                        color.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
                // The legend, outside the data.
                let y = 50 + 22 * i as i32;
                legend
                    .draw(&PathElement::new(
                        vec![(8, y), (30, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(draw_err)?;
                legend
                    .draw(&Text::new(c.label.clone(), (36, y - 7), ("sans-serif", 13)))
                    .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod png_tests {
    use super::png_of;
    use resvg::tiny_skia::Pixmap;

    fn dark_pixels(png: &[u8]) -> (u32, u32, usize) {
        let p = Pixmap::decode_png(png).expect("a PNG");
        let dark = p
            .pixels()
            .iter()
            .filter(|c| c.red() < 128 && c.green() < 128 && c.blue() < 128)
            .count();
        (p.width(), p.height(), dark)
    }

    #[test]
    fn the_png_has_the_svg_size_times_the_scale_and_draws_text_with_the_built_in_font() {
        let svg = |text: &str| {
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="50"><text x="10" y="35" font-family="sans-serif" font-size="24" fill="black">{text}</text></svg>"#
            )
        };
        let (w, h, dark) = dark_pixels(&png_of(&svg("fear 0.82"), 2.0).expect("png"));
        assert_eq!((w, h), (400, 100));
        assert!(dark > 200, "the text was not drawn ({dark} dark pixels)");
        let (_, _, blank) = dark_pixels(&png_of(&svg(""), 2.0).expect("png"));
        assert_eq!(blank, 0);
        assert!(png_of("<svg", 1.0).is_err());
    }
}
