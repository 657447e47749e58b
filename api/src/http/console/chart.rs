//! A small line chart as inline SVG, drawn on the server: presentation
//! attributes only (no style attribute, no script), so it passes the CSP.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

/// Colours the lines take in turn.
const COLOURS: [&str; 8] = [
    "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0969da", "#57606a",
];

pub struct Series<'a> {
    pub label: String,
    pub points: &'a [(DateTime<Utc>, f64)],
}

/// Cumulative values over time, one line per series, with the time range
/// and the largest value on the axes.
pub fn lines(title: &str, series: &[Series<'_>]) -> Markup {
    let (w, h, left, bottom, top, right) = (720.0, 260.0, 56.0, 28.0, 12.0, 12.0);
    let all: Vec<&(DateTime<Utc>, f64)> = series.iter().flat_map(|s| s.points.iter()).collect();
    let (Some(t0), Some(last)) = (
        all.iter().map(|(t, _)| *t).min(),
        all.iter().map(|(t, _)| *t).max(),
    ) else {
        return html! {};
    };
    // The axis runs to now: what was spent stays spent until it renews.
    let t1 = last.max(Utc::now());
    let top_value = all
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let span = (t1 - t0).num_milliseconds().max(1) as f64;
    let x =
        |t: DateTime<Utc>| left + (t - t0).num_milliseconds() as f64 / span * (w - left - right);
    let y = |v: f64| top + (1.0 - v.max(0.0) / top_value) * (h - top - bottom);
    let path = |points: &[(DateTime<Utc>, f64)]| {
        // A step line: spending jumps at each charge.
        let mut d = String::new();
        let mut last: Option<f64> = None;
        for (t, v) in points {
            let (px, py) = (x(*t), y(*v));
            match last {
                None => d.push_str(&format!("M{px:.1},{:.1} L{px:.1},{py:.1}", y(0.0))),
                Some(ly) => d.push_str(&format!(" L{px:.1},{ly:.1} L{px:.1},{py:.1}")),
            }
            last = Some(py);
        }
        if let Some(ly) = last {
            d.push_str(&format!(" L{:.1},{ly:.1}", w - right));
        }
        d
    };
    html! {
        figure.chart {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(title) data-testid="chart" {
                title { (title) }
                line x1=(left) y1=(y(0.0)) x2=(w - right) y2=(y(0.0)) stroke="#8c959f" {}
                line x1=(left) y1=(top) x2=(left) y2=(y(0.0)) stroke="#8c959f" {}
                text x=(left - 6.0) y=(top + 10.0) text-anchor="end" font-size="11" fill="#57606a" { (format!("{top_value:.3}")) }
                text x=(left - 6.0) y=(y(0.0)) text-anchor="end" font-size="11" fill="#57606a" { "0" }
                text x=(left) y=(h - 8.0) font-size="11" fill="#57606a" { (t0.format("%Y-%m-%d %H:%M").to_string()) }
                text x=(w - right) y=(h - 8.0) text-anchor="end" font-size="11" fill="#57606a" { (t1.format("%Y-%m-%d %H:%M").to_string()) }
                @for (i, s) in series.iter().enumerate() {
                    path d=(path(s.points)) fill="none" stroke=(COLOURS[i % COLOURS.len()]) stroke-width="2" {
                        title { (s.label) }
                    }
                }
            }
            figcaption {
                @for (i, s) in series.iter().enumerate() {
                    span.key {
                        svg width="12" height="12" viewBox="0 0 12 12" { rect width="12" height="12" fill=(COLOURS[i % COLOURS.len()]) {} }
                        " " (s.label)
                    }
                }
            }
        }
    }
}
