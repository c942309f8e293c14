//! Server-rendered SVG bar charts: no script, readable without colour (every bar has a title), scaled to the
//! container by the stylesheet. Only numbers and dates built here reach the markup, so nothing needs escaping.

use super::format;
use crate::domain::dashboard::Day;

const WIDTH: i64 = 640;
const HEIGHT: i64 = 180;
const PAD_LEFT: i64 = 8;
const PAD_BOTTOM: i64 = 22;
const PAD_TOP: i64 = 14;

/// One bar per day of `days`, the value taken by `value`, each bar labelled by `label`.
pub fn daily_bars(
    id: &str,
    title: &str,
    days: &[Day],
    value: impl Fn(&Day) -> i64,
    label: impl Fn(i64) -> String,
    class: &str,
) -> String {
    let max = days.iter().map(&value).max().unwrap_or(0).max(1);
    let n = i64::try_from(days.len()).unwrap_or(1).max(1);
    let slot = (WIDTH - PAD_LEFT) / n;
    let bar = (slot * 3 / 4).max(1);
    let plot = HEIGHT - PAD_BOTTOM - PAD_TOP;
    let total: i64 = days.iter().map(&value).sum();
    let mut svg = format!(
        "<svg class=\"chart {class}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\"><title id=\"{id}-t\">{title}</title><desc id=\"{id}-d\">{} in total over {} \
         days; highest day {}</desc>",
        label(total),
        days.len(),
        label(max)
    );
    svg.push_str(&format!(
        "<line x1=\"{PAD_LEFT}\" y1=\"{y}\" x2=\"{WIDTH}\" y2=\"{y}\" class=\"axis\"/>",
        y = HEIGHT - PAD_BOTTOM
    ));
    for (i, d) in days.iter().enumerate() {
        let v = value(d);
        let h = if v == 0 { 0 } else { (v * plot / max).max(2) };
        let x = PAD_LEFT + i64::try_from(i).unwrap_or(0) * slot + (slot - bar) / 2;
        let y = HEIGHT - PAD_BOTTOM - h;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\" class=\"bar\"><title>{}: {}</title></rect>",
            format::date(d.day),
            label(v)
        ));
        // A date under the first, the middle and the last bar.
        if i == 0 || i == days.len() / 2 || i + 1 == days.len() {
            let (anchor, tx) = match i {
                0 => ("start", x),
                i if i + 1 == days.len() => ("end", x + bar),
                _ => ("middle", x + bar / 2),
            };
            svg.push_str(&format!(
                "<text x=\"{tx}\" y=\"{}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>",
                HEIGHT - 6,
                d.day.format("%b %d")
            ));
        }
    }
    svg.push_str(&format!(
        "<text x=\"{PAD_LEFT}\" y=\"{}\" class=\"tick\">max {}</text></svg>",
        PAD_TOP - 3,
        label(max)
    ));
    svg
}
