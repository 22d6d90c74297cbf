//! A precision-recall plot over top-k cutoffs, as the figures of the One2Set papers draw it
//! (one point per k = 1..M, one curve each for present and absent keyphrases), written as SVG
//! by hand: a plotting crate would outweigh the rest of `kpg eval`.

use std::fmt::Write;

/// One curve: (precision, recall) at k = 1, 2, ... in order.
pub struct Curve<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: &'a [(f64, f64)],
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 60.0;
const TICKS: usize = 5;

/// The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `v`, so that five ticks
/// fall on round numbers; 1 when there is nothing to show.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || v.is_infinite() {
        return 1.0;
    }
    let scale = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * scale)
        .find(|&m| m >= v * (1.0 - 1e-9))
        .unwrap_or(10.0 * scale)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick labels with as many decimals as the step needs (0.05 needs two, 0.25 needs two).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = (0..6)
        .find(|&d| {
            let s = step * 10f64.powi(d);
            (s - s.round()).abs() < 1e-6
        })
        .unwrap_or(6) as usize;
    format!("{value:.decimals$}")
}

/// The SVG document.
pub fn precision_recall_svg(title: &str, curves: &[Curve]) -> String {
    let all = curves.iter().flat_map(|c| c.points.iter());
    let (max_p, max_r) = all.fold((0f64, 0f64), |(mp, mr), &(p, r)| (mp.max(p), mr.max(r)));
    let (x_max, y_max) = (nice_max(max_r), nice_max(max_p));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |r: f64| LEFT + r / x_max * plot_w;
    let y = |p: f64| TOP + plot_h - p / y_max * plot_h;

    let mut svg = String::new();
    // fmt::Write into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );

    // Grid, ticks and tick labels.
    for i in 0..=TICKS {
        let (xv, yv) = (
            x_max * i as f64 / TICKS as f64,
            y_max * i as f64 / TICKS as f64,
        );
        let (px, py) = (x(xv), y(yv));
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e0e0e0"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e0e0e0"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + plot_h + 18.0,
            tick_label(xv, x_max / TICKS as f64)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            py + 4.0,
            tick_label(yv, y_max / TICKS as f64)
        );
    }

    // Axes and their labels.
    let _ = writeln!(
        svg,
        r#"<path d="M {LEFT} {TOP} V {:.1} H {:.1}" fill="none" stroke="black"/>"#,
        TOP + plot_h,
        LEFT + plot_w
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">Recall</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 16.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 18 {:.1})">Precision</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    // Curves, with k marked at the first point, at k = 5 and at the last.
    for c in curves {
        let path: Vec<String> = c
            .points
            .iter()
            .map(|&(p, r)| format!("{:.1},{:.1}", x(r), y(p)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            c.color
        );
        for (i, &(p, r)) in c.points.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}"/>"#,
                x(r),
                y(p),
                c.color
            );
            let k = i + 1;
            if k == 1 || k == 5 || k == c.points.len() {
                let _ = writeln!(
                    svg,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{}">k={k}</text>"#,
                    x(r) + 5.0,
                    y(p) - 5.0,
                    c.color
                );
            }
        }
    }

    // Legend, bottom left inside the plot: precision-recall curves rarely pass there.
    let legend_top = TOP + plot_h - 12.0 - 18.0 * curves.len() as f64;
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{legend_top:.1}" width="170" height="{:.1}" fill="white" stroke="#c0c0c0"/>"##,
        LEFT + 10.0,
        18.0 * curves.len() as f64 + 4.0
    );
    for (i, c) in curves.iter().enumerate() {
        let ly = legend_top + 11.0 + 18.0 * i as f64;
        let lx = LEFT + 18.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"/>"#,
            lx + 24.0,
            c.color
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 30.0,
            ly + 4.0,
            escape(c.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.37), 0.5);
        assert_eq!(nice_max(0.5), 0.5);
        assert_eq!(nice_max(0.061), 0.1);
        assert_eq!(nice_max(0.021), 0.025);
        assert_eq!(nice_max(1.0), 1.0);
    }

    #[test]
    fn two_curves_and_a_legend() {
        let svg = precision_recall_svg(
            "a < b",
            &[
                Curve {
                    label: "present",
                    color: "#1f77b4",
                    points: &[(0.5, 0.1), (0.4, 0.2)],
                },
                Curve {
                    label: "absent",
                    color: "#d62728",
                    points: &[(0.05, 0.01)],
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains(">present<") && svg.contains(">absent<"));
        assert!(svg.contains("a &lt; b"));
        assert!(svg.contains(">Recall<") && svg.contains(">Precision<"));
    }
}
