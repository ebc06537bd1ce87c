//! `Range: bytes=...` on blob reads, which agents use to resume interrupted downloads.
//! One range is served; a request for several gets the whole blob (allowed by RFC 9110).

/// What to send of a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// The whole blob, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// Nothing of it can be served, 416.
    Unsatisfiable,
}

/// Interprets a `Range` header value for a blob of `size` bytes. A header that is not
/// a byte range is ignored, as the RFC says.
pub(crate) fn span(header: Option<&str>, size: u64) -> Span {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Span::Full;
    };
    if spec.contains(',') {
        return Span::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Span::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => Span::Unsatisfiable,
            Some(n) if size > 0 => Span::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => Span::Unsatisfiable,
            None => Span::Full,
        },
        // bytes=N-: from N to the end.
        (false, true) => match parse(first) {
            Some(start) if start < size => Span::Part {
                start,
                end: size - 1,
            },
            Some(_) => Span::Unsatisfiable,
            None => Span::Full,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    Span::Unsatisfiable
                } else {
                    Span::Part {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => Span::Full,
        },
        (true, true) => Span::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let part = |start, end| Span::Part { start, end };
        assert_eq!(span(None, 10), Span::Full);
        assert_eq!(span(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(span(Some("bytes=5-"), 10), part(5, 9));
        assert_eq!(span(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(span(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(span(Some("bytes=8-100"), 10), part(8, 9));
        assert_eq!(span(Some("bytes=10-"), 10), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=10-12"), 10), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=-0"), 10), Span::Unsatisfiable);
        assert_eq!(span(Some("bytes=0-1,3-4"), 10), Span::Full);
        assert_eq!(span(Some("bytes=4-2"), 10), Span::Full);
        assert_eq!(span(Some("items=0-1"), 10), Span::Full);
        assert_eq!(span(Some("bytes=x-1"), 10), Span::Full);
        assert_eq!(span(Some("bytes=0-"), 0), Span::Unsatisfiable);
    }
}
