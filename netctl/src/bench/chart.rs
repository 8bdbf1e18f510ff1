//! Minimal SVG line charts for the benchmark report: one line per mode, N on a log scale.
//! Hand-written (a few dozen lines) rather than a plotting dependency.

use std::fmt::Write as _;

/// One line of a chart.
pub(crate) struct Series {
    pub(crate) name: &'static str,
    /// An SVG colour, fixed per mode so every chart colours a mode alike.
    pub(crate) color: &'static str,
    pub(crate) points: Vec<(f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// An SVG chart of `series`; x is always log10, y is log10 when `log_y`.
pub(crate) fn line_chart(title: &str, y_label: &str, series: &[Series], log_y: bool) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let scale = |v: f64, log: bool| if log { v.max(1e-9).log10() } else { v };
    let (x_min, x_max) = bounds(points().map(|p| scale(p.0, true)));
    let (mut y_min, y_max) = bounds(points().map(|p| scale(p.1, log_y)));
    if !log_y {
        y_min = 0.0;
    }
    let px = |x: f64| {
        LEFT + (scale(x, true) - x_min) / (x_max - x_min).max(1e-9) * (WIDTH - LEFT - RIGHT)
    };
    let py = |y: f64| {
        HEIGHT
            - BOTTOM
            - (scale(y, log_y) - y_min) / (y_max - y_min).max(1e-9) * (HEIGHT - TOP - BOTTOM)
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"15\">{title}</text>\n\
         <line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">services (log scale)</text>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{y_label}</text>\n",
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 12.0,
        HEIGHT / 2.0,
        HEIGHT / 2.0,
    );
    // Ticks: every power of ten on x; five values on y.
    let mut decade = x_min.floor();
    while decade <= x_max {
        let x = px(10f64.powf(decade));
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM + 16.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    // Log scale: every power of ten in range; linear: five steps from zero.
    let ticks: Vec<f64> = if log_y {
        let mut decade = y_min.ceil();
        let mut ticks = Vec::new();
        while decade <= y_max {
            ticks.push(10f64.powf(decade));
            decade += 1.0;
        }
        ticks
    } else {
        (0..=4)
            .map(|i| y_min + (y_max - y_min) * f64::from(i) / 4.0)
            .collect()
    };
    for value in ticks {
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            py(value) + 4.0,
            short(value)
        );
    }
    for (index, s) in series.iter().enumerate() {
        let color = s.color;
        let path: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in &s.points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                px(*x),
                py(*y)
            );
        }
        let ly = TOP + 18.0 * index as f64;
        let lx = WIDTH - RIGHT + 14.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{}</text>",
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            s.name
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

fn short(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_one_line_per_series_and_a_legend() {
        let series = [
            Series {
                name: "a",
                color: "red",
                points: vec![(1.0, 10.0), (100.0, 20.0), (10_000.0, 30.0)],
            },
            Series {
                name: "b",
                color: "blue",
                points: vec![(1.0, 1.0), (10_000.0, 1000.0)],
            },
        ];
        let svg = line_chart("t", "µs", &series, true);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains(">a</text>") && svg.contains(">b</text>"));
        assert!(!svg.contains("NaN"), "every coordinate is a number");
    }
}
