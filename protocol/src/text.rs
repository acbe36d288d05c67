//! Text a scanner or a person wrote: names, codes, labels. Control characters (C0, DEL, C1)
//! are refused everywhere — they break logs, CSV files and screens — and the published
//! schemas say so with these patterns (ECMA-262 and the `regex` crate read them alike).

/// No control characters.
pub const PRINTABLE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// No control characters, and not only spaces.
pub const PRINTABLE_NOT_BLANK: &str =
    r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// 1 to `max` characters, none of them a control character ([`PRINTABLE`]).
pub fn printable(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.chars().count()) && !text.chars().any(char::is_control)
}

/// [`printable`], and not only spaces ([`PRINTABLE_NOT_BLANK`]).
pub fn printable_not_blank(text: &str, max: usize) -> bool {
    printable(text, max) && !text.trim().is_empty()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_and_blanks_are_refused() {
        assert!(super::printable("CAT 777G", 200) && super::printable(" ", 1));
        for bad in ["", "a\tb", "a\u{7f}", "a\u{85}", "too long"] {
            assert!(!super::printable(bad, 3), "{bad:?}");
        }
        assert!(!super::printable_not_blank("   ", 200) && super::printable_not_blank(" x ", 200));
    }
}
