//! The report's plots, drawn with plotters' SVG backend: grouped bars (a metric per group, a
//! method per bar), lines (metrics over a swept parameter or along an edit sequence) and stacked
//! bars (time per phase). Each function returns one `<svg>` element, ready to inline in HTML.
//!
//! Legends are left to the HTML around the plot (see [`PALETTE`]), so a legend never covers a
//! bar at 100 %.

use plotters::prelude::*;

use super::read::Score;

/// Plot size in pixels.
const SIZE: (u32, u32) = (760, 340);

/// Series colours (Tableau 10), in the order series are given; the HTML legend uses the same.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of series `i`.
pub fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// One named series of a bar chart: a value per category (`None`: no bar).
#[derive(Debug, Clone)]
pub struct Bars {
    pub name: String,
    pub values: Vec<Option<Score>>,
}

/// A point of a line: x, the mean, and its interval (or spread) if any.
pub type Point = (f64, f64, Option<(f64, f64)>);

/// One named line, points in x order.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<Point>,
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Renders with `draw` into an SVG string; plotters' errors become text.
fn svg(
    draw: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Drawn,
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(root).map_err(|e| e.to_string())?;
    }
    // Inline SVG in HTML needs no namespace; dropping it keeps the page free of any URL.
    Ok(out.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1))
}

/// A number for an axis label: integers without decimals, others with up to 3 significant
/// digits.
pub fn tick(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        let digits = (2 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{x:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Grouped bars: one group per category, one bar per series, an interval whisker where the
/// score has one. Values are fractions, drawn in percent.
pub fn grouped_bars(categories: &[&str], series: &[Bars], y_desc: &str) -> Result<String, String> {
    let n = categories.len().max(1);
    let labels: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
    svg(|root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..105f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .y_label_formatter(&|y| tick(*y))
            .label_style(("sans-serif", 14))
            .draw()?;
        let width = 0.8 / series.len().max(1) as f64;
        for (j, s) in series.iter().enumerate() {
            let fill = colour(j).filled();
            let left = |i: usize| i as f64 - 0.4 + j as f64 * width;
            chart.draw_series(s.values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                Some(Rectangle::new(
                    [
                        (left(i) + width * 0.06, 0.0),
                        (left(i) + width * 0.94, 100.0 * v.mean),
                    ],
                    fill,
                ))
            }))?;
            chart.draw_series(s.values.iter().enumerate().filter_map(|(i, v)| {
                let (lo, hi) = (*v)?.ci?;
                let x = left(i) + width / 2.0;
                Some(PathElement::new(
                    vec![(x, 100.0 * lo), (x, 100.0 * hi)],
                    BLACK.stroke_width(2),
                ))
            }))?;
        }
        root.present()?;
        Ok(())
    })
}

/// Lines with markers (and interval whiskers) over a numeric x; `log_x` plots x on a log10 axis
/// (every x must then be positive).
pub fn lines(
    lines: &[Line],
    x_desc: &str,
    y_desc: &str,
    log_x: bool,
    percent: bool,
) -> Result<String, String> {
    let tx = |x: f64| if log_x { x.log10() } else { x };
    let ty = |y: f64| if percent { 100.0 * y } else { y };
    let xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| tx(p.0)))
        .collect();
    let (mut x0, mut x1) = bounds(&xs);
    if x0 == x1 {
        x0 -= 1.0;
        x1 += 1.0;
    }
    let pad = (x1 - x0) * 0.05;
    let (y0, y1) = if percent {
        (0.0, 105.0)
    } else {
        let ys: Vec<f64> = lines
            .iter()
            .flat_map(|l| {
                l.points
                    .iter()
                    .flat_map(|p| [p.1, p.2.map_or(p.1, |c| c.1)])
            })
            .collect();
        (0.0, bounds(&ys).1.max(1e-9) * 1.1)
    };
    svg(|root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            // On a log axis only whole decades are labelled (0.001, 0.01, …).
            .x_label_formatter(&|x| match log_x {
                true if (x - x.round()).abs() < 1e-6 => tick(10f64.powf(x.round())),
                true => String::new(),
                false => tick(*x),
            })
            .y_label_formatter(&|y| tick(*y))
            .label_style(("sans-serif", 14))
            .draw()?;
        // Earlier lines are drawn wider, so lines that coincide still show every colour.
        let n = lines.len() as u32;
        for (j, l) in lines.iter().enumerate() {
            let c = colour(j);
            let w = 2 + 2 * (n - 1 - j as u32);
            let pts: Vec<(f64, f64)> = l.points.iter().map(|p| (tx(p.0), ty(p.1))).collect();
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(w)))?;
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, w + 2, c.filled())))?;
            chart.draw_series(l.points.iter().filter_map(|p| {
                let (lo, hi) = p.2?;
                Some(PathElement::new(
                    vec![(tx(p.0), ty(lo)), (tx(p.0), ty(hi))],
                    c.stroke_width(1),
                ))
            }))?;
        }
        root.present()?;
        Ok(())
    })
}

/// Stacked bars: one bar per category, one layer per named series (non-negative values).
pub fn stacked_bars(
    categories: &[&str],
    layers: &[(String, Vec<f64>)],
    y_desc: &str,
) -> Result<String, String> {
    let n = categories.len().max(1);
    let labels: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
    let totals: Vec<f64> = (0..n)
        .map(|i| {
            layers
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0.0).max(0.0))
                .sum()
        })
        .collect();
    let top = bounds(&totals).1.max(1e-9) * 1.1;
    svg(|root| {
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .y_label_formatter(&|y| tick(*y))
            .label_style(("sans-serif", 14))
            .draw()?;
        let mut base = vec![0.0; n];
        for (j, (_, values)) in layers.iter().enumerate() {
            let fill = colour(j).filled();
            let bars: Vec<Rectangle<(f64, f64)>> = (0..n)
                .map(|i| {
                    let v = values.get(i).copied().unwrap_or(0.0).max(0.0);
                    let r = Rectangle::new(
                        [(i as f64 - 0.3, base[i]), (i as f64 + 0.3, base[i] + v)],
                        fill,
                    );
                    base[i] += v;
                    r
                })
                .collect();
            chart.draw_series(bars)?;
        }
        root.present()?;
        Ok(())
    })
}

fn bounds(xs: &[f64]) -> (f64, f64) {
    let finite = xs.iter().copied().filter(|x| x.is_finite());
    let lo = finite.clone().fold(f64::INFINITY, f64::min);
    let hi = finite.fold(f64::NEG_INFINITY, f64::max);
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(0.001), "0.001");
        assert_eq!(tick(12.5), "12.5");
        assert_eq!(tick(0.30000000000000004), "0.3");
    }

    #[test]
    fn a_plot_is_one_svg_without_namespace_url() {
        let svg = grouped_bars(
            &["Rel", "T-Gen"],
            &[Bars {
                name: "a".into(),
                values: vec![
                    Some(Score {
                        mean: 0.5,
                        ci: Some((0.4, 0.6)),
                    }),
                    None,
                ],
            }],
            "%",
        )
        .unwrap();
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("://"), "{svg}");
        assert!(svg.contains("T-Gen"));
    }
}
