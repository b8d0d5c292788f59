//! A server-side SVG bar chart: no script, no external library.

use maud::{html, Markup};

use crate::routes::analytics::Point;

const W: f64 = 720.0;
const H: f64 = 180.0;
const PAD_L: f64 = 40.0;
const PAD_B: f64 = 22.0;

/// Succeeded (green) and failed (red) attempts per bucket, stacked.
pub fn deliveries(series: &[Point]) -> Markup {
    let max = series.iter().map(|p| p.figures.attempts).max().unwrap_or(0).max(1) as f64;
    let n = series.len().max(1) as f64;
    let slot = (W - PAD_L) / n;
    let bar = (slot * 0.7).max(1.0);
    let y = |v: f64| (H - PAD_B) * (1.0 - v / max);
    let label = |t: &str| t.get(11..16).unwrap_or(t).to_owned();
    html! {
        svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label="Deliveries and failures over time" {
            line x1=(PAD_L) y1=(H - PAD_B) x2=(W) y2=(H - PAD_B) stroke="#9aa4b2" stroke-width="1" {}
            text x=(PAD_L - 6.0) y="12" text-anchor="end" font-size="11" fill="#5b6472" { (max as i64) }
            text x=(PAD_L - 6.0) y=(H - PAD_B) text-anchor="end" font-size="11" fill="#5b6472" { "0" }
            @for (i, p) in series.iter().enumerate() {
                @let x = PAD_L + i as f64 * slot + (slot - bar) / 2.0;
                @let ok = p.figures.succeeded as f64;
                @let failed = p.figures.failed as f64;
                g {
                    title { (p.t) ": " (p.figures.succeeded) " succeeded, " (p.figures.failed) " failed" }
                    rect x=(x) y=(y(ok)) width=(bar) height=((H - PAD_B) - y(ok)) fill="#2f9e62" {}
                    rect x=(x) y=(y(ok + failed)) width=(bar) height=(y(ok) - y(ok + failed)) fill="#d64545" {}
                }
                @if series.len() <= 12 || i % (series.len() / 6).max(1) == 0 {
                    text x=(x + bar / 2.0) y=(H - 6.0) text-anchor="middle" font-size="10" fill="#5b6472" { (label(&p.t)) }
                }
            }
            @if series.is_empty() {
                text x=(W / 2.0) y=(H / 2.0) text-anchor="middle" font-size="13" fill="#5b6472" { "No deliveries in this window" }
            }
        }
    }
}
