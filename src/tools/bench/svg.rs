//! A latency-by-percentile plot in the HdrHistogram style, as one self-contained SVG.
//!
//! The x axis is `log10(1 / (1 - p))`, so 0 %, 90 %, 99 %, 99.9 %, ... are evenly spaced
//! and the tail gets the room it deserves; the y axis is latency, linear from zero.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

use hdrhistogram::Histogram;

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 44.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 64.0;
/// Nines shown at least (99.999 %), and at most.
const NINES_MIN: u32 = 5;
const NINES_MAX: u32 = 7;
/// Percentile points per halving of the distance to 100 % (HdrHistogram's default).
const TICKS_PER_HALF_DISTANCE: u32 = 5;
const Y_TICKS: u32 = 5;

/// The plot of `latency` (nanoseconds) under `title`. An empty histogram gives axes only.
pub fn percentile_plot(latency: &Histogram<u64>, title: &str) -> String {
    let count = latency.len();
    let nines = if count > 0 { ((count as f64).log10().ceil() as u32).clamp(NINES_MIN, NINES_MAX) } else { NINES_MIN };
    let x_max = f64::from(nines);
    let (unit, unit_ns) = unit_for(latency.max());
    let y_max = nice_ceiling(latency.max().max(1) as f64 / unit_ns);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_at = |x: f64| LEFT + x.min(x_max) / x_max * plot_w;
    let y_at = |value: f64| TOP + plot_h - (value / y_max).min(1.0) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{}" y="24" text-anchor="middle" font-size="14">{}</text>"#, WIDTH / 2.0, escape(title));
    for nine in 0..=nines {
        let x = x_at(f64::from(nine));
        let _ = writeln!(svg, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##, TOP + plot_h);
        let _ = writeln!(svg, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, TOP + plot_h + 18.0, percentile_label(nine));
    }
    for tick in 0..=Y_TICKS {
        let value = y_max * f64::from(tick) / f64::from(Y_TICKS);
        let y = y_at(value);
        let _ = writeln!(svg, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, LEFT + plot_w);
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, trim_number(value));
    }
    let _ = writeln!(svg, r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#);
    let _ = writeln!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#, LEFT + plot_w / 2.0, HEIGHT - 16.0);
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency ({unit})</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    if count > 0 {
        let mut points = String::new();
        for value in latency.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            let quantile = value.quantile_iterated_to();
            let x = if quantile >= 1.0 { x_max } else { -(1.0 - quantile).log10() };
            let _ = write!(points, "{:.1},{:.1} ", x_at(x), y_at(value.value_iterated_to() as f64 / unit_ns));
        }
        let _ = writeln!(svg, r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##, points.trim_end());
    }
    svg.push_str("</svg>\n");
    svg
}

/// `0%`, `90%`, `99%`, `99.9%`, ...
fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

fn unit_for(max_ns: u64) -> (&'static str, f64) {
    if max_ns >= 10_000_000_000 {
        ("s", 1e9)
    } else if max_ns >= 5_000_000 {
        ("ms", 1e6)
    } else {
        ("µs", 1e3)
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|step| step * magnitude).find(|candidate| *candidate >= value).unwrap_or(10.0 * magnitude)
}

fn trim_number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::bench::stats::latency_histogram;

    /// Checks that every tag is closed in order and attribute values are quoted: enough
    /// of XML well-formedness for what this writer emits.
    fn assert_well_formed(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            assert!(!rest[..open].contains(['>', '"']), "stray markup in text: {:?}", &rest[..open]);
            let close = rest[open..].find('>').expect("tag closed") + open;
            let tag = &rest[open + 1..close];
            assert!(tag.matches('"').count().is_multiple_of(2), "unbalanced quotes in <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().expect("tag name").to_owned());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
        assert!(rest.trim().is_empty());
    }

    #[test]
    fn plot_is_well_formed_and_has_the_percentile_axis() {
        let mut latency = latency_histogram();
        for micros in 1..=20_000u64 {
            latency.saturating_record(micros * 1000);
        }
        let svg = percentile_plot(&latency, "sluice <bench> & \"friends\"");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_well_formed(&svg);
        for label in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "latency (ms)", "&lt;bench&gt; &amp; &quot;friends&quot;"] {
            assert!(svg.contains(&format!(">{label}<")) || svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("<polyline"));
    }

    #[test]
    fn empty_histogram_gives_axes_only() {
        let svg = percentile_plot(&latency_histogram(), "empty");
        assert_well_formed(&svg);
        assert!(!svg.contains("<polyline"));
    }

    #[test]
    fn axis_helpers() {
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(4), "99.99%");
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(trim_number(2.50), "2.5");
    }
}
