//! Aligned text tables and kubectl-style ages: the two formatting primitives every
//! table printer of the CLI is built from.

use chrono::{DateTime, Utc};

/// Spaces between two columns, as kubectl prints them.
const GAP: usize = 3;

/// A table whose column widths come from its content. The last column is never padded,
/// so lines carry no trailing spaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Column widths over the header and every row.
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| cell_width(h)).collect();
        for row in &self.rows {
            widen(&mut widths, row);
        }
        widths
    }

    /// The whole table, header first, one `\n`-terminated line per row.
    pub(crate) fn render(&self) -> String {
        self.render_with(&self.widths(), true)
    }

    /// The rows only, aligned to `widths` (widened where a cell needs more).
    pub(crate) fn render_with(&self, widths: &[usize], header: bool) -> String {
        let mut widths = widths.to_vec();
        widen(&mut widths, &self.header);
        for row in &self.rows {
            widen(&mut widths, row);
        }
        let mut out = String::new();
        if header && !self.header.is_empty() {
            out.push_str(&format_line(&self.header, &widths));
        }
        for row in &self.rows {
            out.push_str(&format_line(row, &widths));
        }
        out
    }
}

fn cell_width(s: &str) -> usize {
    s.chars().count()
}

fn widen(widths: &mut Vec<usize>, row: &[String]) {
    for (i, cell) in row.iter().enumerate() {
        let w = cell_width(cell);
        match widths.get_mut(i) {
            Some(current) => *current = (*current).max(w),
            None => widths.push(w),
        }
    }
}

/// One aligned line. Every cell but the last is padded to its column width plus the gap.
pub(crate) fn format_line(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell_width(cell)) + GAP;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    // An empty last cell would leave the padding of the one before it.
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

/// Aligns tab-separated text the way Go's `text/tabwriter` does, which is how kubectl
/// lays out `describe`: a column is as wide as its widest cell among the consecutive
/// lines that have that column, plus `padding`. A line's last cell is not padded.
pub(crate) fn tabwrite(text: &str, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = vec![Vec::new(); lines.len()];
    block_widths(&lines, &mut widths, 0, lines.len(), 0, padding);
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if let Some(w) = widths.get(i).filter(|_| i + 1 < cells.len()) {
                let pad = w.saturating_sub(cell_width(cell));
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Sets the width of column `col` for each block of consecutive lines in `start..end`
/// that have a tab-terminated cell there, then recurses into the block for the next column.
fn block_widths(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    col: usize,
    padding: usize,
) {
    let mut i = start;
    while i < end {
        if lines[i].len() <= col + 1 {
            i += 1;
            continue;
        }
        let block_start = i;
        let mut width = 0;
        while i < end && lines[i].len() > col + 1 {
            width = width.max(cell_width(lines[i][col]));
            i += 1;
        }
        for w in &mut widths[block_start..i] {
            w.push(width + padding);
        }
        block_widths(lines, widths, block_start, i, col + 1, padding);
    }
}

/// The age of something created at `then`, as kubectl prints it: `45s`, `3m12s`, `15m`,
/// `4h`, `5h20m`, `30h`, `2d3h`, `45d`, `2y30d`. Precision drops as the age grows so the
/// column stays narrow.
pub(crate) fn human_age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds();
    human_duration_seconds(seconds)
}

pub(crate) fn human_duration_seconds(seconds: i64) -> String {
    // A clock skew of a second between hub and client is normal; more is suspicious.
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let seconds = seconds.max(0);
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

/// Parses an RFC 3339 timestamp as the hub writes it.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The age column for an optional timestamp: `<unknown>` when absent or unreadable.
pub(crate) fn age_of(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => human_age(t, now),
        None => "<unknown>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_plus_three_spaces() {
        let mut t = Table::new(["NAME", "READY", "STATUS"]);
        t.push(row(&["web-1", "1/1", "Running"]));
        t.push(row(&["a-much-longer-name", "0/1", "CrashLoopBackOff"]));
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                "NAME                 READY   STATUS",
                "web-1                1/1     Running",
                "a-much-longer-name   0/1     CrashLoopBackOff",
            ]
        );
        assert!(text.lines().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn rendering_against_earlier_widths_keeps_alignment_and_widens_when_needed() {
        let mut first = Table::new(["NAME", "AGE"]);
        first.push(row(&["web", "5s"]));
        let widths = first.widths();
        let mut later = Table::new(["NAME", "AGE"]);
        later.push(row(&["w", "1s"]));
        assert_eq!(later.render_with(&widths, false), "w      1s\n");
        let mut wider = Table::new(["NAME", "AGE"]);
        wider.push(row(&["web-server-long", "1s"]));
        assert_eq!(wider.render_with(&widths, false), "web-server-long   1s\n");
    }

    #[test]
    fn tabwrite_aligns_each_block_of_lines_separately() {
        let text = "Name:\tweb\nService Account:\tdefault\nLabels:\tapp=web\n\ttier=fe\n\
                    Containers:\n  web:\n    Image:\tnginx\n    Restart Count:\t0\n\
                    Conditions:\n  Type\tStatus\n  Ready\tTrue\n  PodScheduled\tTrue\n";
        let want = "\
Name:             web
Service Account:  default
Labels:           app=web
                  tier=fe
Containers:
  web:
    Image:          nginx
    Restart Count:  0
Conditions:
  Type          Status
  Ready         True
  PodScheduled  True
";
        assert_eq!(tabwrite(text, 2), want);
        // A trailing empty cell leaves no trailing spaces.
        assert_eq!(tabwrite("Taints:\t\n", 2), "Taints:\n");
    }

    #[test]
    fn ages_match_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (9 * 60 + 59, "9m59s"),
            (10 * 60 + 30, "10m"),
            (179 * 60, "179m"),
            (4 * 3600, "4h"),
            (5 * 3600 + 20 * 60, "5h20m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (7 * 86400, "7d"),
            (45 * 86400, "45d"),
            (800 * 86400, "2y70d"),
            (365 * 9 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration_seconds(secs), want, "{secs}s");
        }
    }

    #[test]
    fn age_of_parses_timestamps_and_tolerates_missing_ones() {
        let now = parse_time("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(age_of(Some("2026-01-02T03:00:53Z"), now), "3m12s");
        assert_eq!(age_of(None, now), "<unknown>");
        assert_eq!(age_of(Some("yesterday"), now), "<unknown>");
    }
}
