//! CSV fields for the exports finance opens in a spreadsheet: quoted when they need to be (RFC 4180), and text a
//! spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) prefixed with
//! `'` so it stays text. Only text columns go through here; numbers are written as they are.

use std::borrow::Cow;

fn is_formula(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

fn needs_quotes(s: &str) -> bool {
    s.contains([',', '"', '\n', '\r'])
}

/// The field as it goes into a CSV row.
pub fn field(s: &str) -> Cow<'_, str> {
    if !is_formula(s) && !needs_quotes(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 4);
    push_field(&mut out, s);
    Cow::Owned(out)
}

/// Appends the field to a row being built (no allocation for the common plain field).
pub fn push_field(out: &mut String, s: &str) {
    let quote = needs_quotes(s);
    if quote {
        out.push('"');
    }
    if is_formula(s) {
        out.push('\'');
    }
    if quote {
        for (i, part) in s.split('"').enumerate() {
            if i > 0 {
                out.push_str("\"\"");
            }
            out.push_str(part);
        }
        out.push('"');
    } else {
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(field("gpt-4o"), "gpt-4o");
        assert!(matches!(field("gpt-4o"), Cow::Borrowed(_)));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("-2"), "'-2");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(field("=1,\"2\""), "\"'=1,\"\"2\"\"\"");
        assert_eq!(field("\r\n"), "\"'\r\n\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field(""), "");
        let mut row = String::from("1,");
        push_field(&mut row, "a\"b");
        assert_eq!(row, "1,\"a\"\"b\"");
    }
}
