//! Strip plots of per-seed values: the V2 metrics are bimodal, so tables of
//! means alone mislead; the figure shows every seed.

use crate::experiment::Experiment;
use crate::reproduce::{Block, ReproduceOptions};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

const PANEL_W: u32 = 900;
const PANEL_H: u32 = 260;

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the figure: {e:?}")
}

/// Deterministic jitter in [-0.3, 0.3] from an index (no RNG needed).
fn jitter(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (x as f64 / (1u64 << 24) as f64 - 0.5) * 0.6
}

/// One panel per experiment; per block, control and treatment side by side,
/// each seed a dot, the mean a bar.
pub fn distributions(
    experiments: &[Experiment],
    blocks: &[Vec<Block>],
    o: &ReproduceOptions,
) -> Result<String> {
    let mut svg = String::new();
    {
        let height = PANEL_H * experiments.len() as u32 + 40;
        let root = SVGBackend::with_string(&mut svg, (PANEL_W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (title, body) = root.split_vertically(40);
        title
            .titled(
                &format!(
                    "Per-seed values, {} seeds per block, rng {} (dots: seeds; bars: means)",
                    o.seeds, o.rng
                ),
                ("sans-serif", 18),
            )
            .map_err(draw_err)?;
        let panels = body.split_evenly((experiments.len(), 1));
        for ((exp, exp_blocks), panel) in experiments.iter().zip(blocks).zip(panels.iter()) {
            let values = exp_blocks
                .iter()
                .flat_map(|b| b.control.iter().chain(&b.treatment))
                .copied();
            let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(v), h.max(v))
            });
            let pad = ((hi - lo) * 0.08).max(0.05);
            let n_cols = exp_blocks.len() * 2;
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{} — {}", exp.title, exp.metric_description),
                    ("sans-serif", 14),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(-0.5..(n_cols as f64 - 0.5), (lo - pad)..(hi + pad))
                .map_err(draw_err)?;
            let labels: Vec<String> = exp_blocks
                .iter()
                .flat_map(|b| {
                    [
                        format!("{} {}", exp.control.label, b.label),
                        format!("{} {}", exp.treatment.label, b.label),
                    ]
                })
                .collect();
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n_cols)
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 {
                        labels.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
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
    pub curves: Vec<Curve>,
}

/// Stacked learning-curve panels (mean line, shaded band) as an SVG string.
pub fn learning_curves(panels: &[CurvePanel]) -> Result<String> {
    const COLORS: [RGBColor; 4] = [BLUE, RED, RGBColor(0, 140, 70), RGBColor(150, 90, 0)];
    let mut svg = String::new();
    {
        let height = (PANEL_H + 40) * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (PANEL_W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        for (panel, area) in panels
            .iter()
            .zip(root.split_evenly((panels.len().max(1), 1)).iter())
        {
            let len = panel.curves.iter().map(|c| c.mean.len()).max().unwrap_or(0);
            let (lo, hi) = panel
                .curves
                .iter()
                .flat_map(|c| c.low.iter().chain(&c.high))
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                    (l.min(*v), h.max(*v))
                });
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo, hi)
            } else {
                (0.0, 1.0)
            };
            let pad = (hi - lo) * 0.05;
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(0f64..len.max(1) as f64, (lo - pad)..(hi + pad))
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("episode")
                .draw()
                .map_err(draw_err)?;
            for (i, c) in panel.curves.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let band: Vec<(f64, f64)> = c
                    .high
                    .iter()
                    .enumerate()
                    .map(|(e, v)| (e as f64, *v))
                    .chain(c.low.iter().enumerate().rev().map(|(e, v)| (e as f64, *v)))
                    .collect();
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.15).filled(),
                    )))
                    .map_err(draw_err)?;
                chart
                    .draw_series(LineSeries::new(
                        c.mean.iter().enumerate().map(|(e, v)| (e as f64, *v)),
                        color.stroke_width(2),
                    ))
                    .map_err(draw_err)?
                    .label(c.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}
